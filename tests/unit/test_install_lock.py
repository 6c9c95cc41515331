"""The install lock's owner identity: tokens and heartbeats, not pids.

Every containerised worker is pid 1 in its own PID namespace, and a restarted container keeps
its host name. These tests give holders and takers such identities through the `owner` seam,
run holders as real processes, and kill them for real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from bootstrap.lock import InstallLock, Owner, read_owner

REPO = Path(__file__).resolve().parents[2]


def container(pid_ns: str, token: str, start_ticks: int = 100) -> Owner:
    """Pid 1 of a container named worker-a on this boot, in its own PID namespace."""
    me = Owner.me()
    return Owner("worker-a", me.boot_id, pid_ns, 1, start_ticks, token, time.time())


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_HOLDER = """
import sys, time
from pathlib import Path
from bootstrap.lock import InstallLock, Owner
owner = Owner("worker-a", Owner.me().boot_id, "pid:[111]", 1, 100, "holder-token", time.time())
lock = InstallLock(Path(sys.argv[1]), log=print, owner=owner, heartbeat_s=float(sys.argv[2]))
assert lock.try_acquire()
print("held", flush=True)
time.sleep(3600)
"""


def start_holder(path: Path, heartbeat_s: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), str(heartbeat_s)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_restarted_container_takes_over_its_dead_self_within_the_stale_bound(
    tmp_path: Path,
) -> None:
    path = tmp_path / "k.lock"
    holder = start_holder(path, heartbeat_s=0.05)
    logged: list[str] = []
    # The same container restarted: same host name, same pid 1, a new PID namespace.
    stale_after_s = 1.0
    taker = InstallLock(
        path,
        log=logged.append,
        owner=container("pid:[222]", "taker-token", start_ticks=900),
        stale_after_s=stale_after_s,
        heartbeat_s=0.05,
    )
    try:
        # While the holder lives, its heartbeat keeps the lock, for many stale bounds.
        watch_until = time.monotonic() + 3 * stale_after_s
        while time.monotonic() < watch_until:
            assert not taker.try_acquire()
            time.sleep(0.05)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    killed = time.monotonic()
    while not taker.try_acquire():
        assert time.monotonic() - killed < stale_after_s + 2.0, "the dead holder was not replaced"
        time.sleep(0.05)
    assert logged == ["lock: took over k.lock from pid 1 on worker-a, which is gone"]
    assert read_owner(path) == taker.owner
    taker.release()
    assert not path.exists()


def test_dead_holder_elsewhere_is_taken_over_after_the_stale_bound_and_not_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "k.lock"
    dead = replace(container("pid:[111]", "dead-token"), host="other-host")
    path.write_text(json.dumps(asdict(dead)))  # a fresh heartbeat, never to move again
    clock = FakeMonotonic()
    taker = InstallLock(
        path, log=print, monotonic=clock, owner=container("pid:[222]", "taker-token")
    )
    assert not taker.try_acquire()
    clock.now += taker.stale_after_s - 1
    assert not taker.try_acquire()
    os.utime(path)  # a beat: the watch starts again
    clock.now += 2
    assert not taker.try_acquire()
    clock.now += taker.stale_after_s
    assert taker.try_acquire()
    taker.release()


def test_an_earlier_process_with_our_pid_is_dead_at_once(tmp_path: Path) -> None:
    # Same host, boot, PID namespace and pid, another start time: a process that was before us.
    path = tmp_path / "k.lock"
    me = Owner.me()
    earlier = replace(me, start_ticks=me.start_ticks - 1, token="earlier-token")
    path.write_text(json.dumps(asdict(earlier)))
    logged: list[str] = []
    lock = InstallLock(path, log=logged.append, monotonic=FakeMonotonic())
    assert lock.try_acquire()
    assert logged == [f"lock: took over k.lock from pid {me.pid} on {me.host}, which is gone"]
    lock.release()


def test_a_live_holder_in_this_namespace_is_respected(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    first = InstallLock(path, log=print)
    assert first.try_acquire()
    second = InstallLock(path, log=print, monotonic=FakeMonotonic())
    assert not second.try_acquire()  # the same process: not provably dead
    first.release()


_TAKER = """
import sys, time
from pathlib import Path
from bootstrap.lock import InstallLock
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
lock = InstallLock(Path(sys.argv[1]), log=lambda line: None)
print("won" if lock.try_acquire() else "lost", flush=True)
sys.stdin.read()  # alive, holding what it won, until every taker has tried
"""


def test_of_many_takers_at_once_exactly_one_wins(tmp_path: Path) -> None:
    for round_ in range(4):
        path = tmp_path / f"k{round_}.lock"
        dead = replace(container("pid:[111]", f"dead-{round_}"), host="other-host")
        path.write_text(json.dumps(asdict(dead)))
        old = time.time() - 3600
        os.utime(path, (old, old))
        go = tmp_path / f"go{round_}"
        takers = [
            subprocess.Popen(
                [sys.executable, "-c", _TAKER, str(path), str(go)],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        go.touch()
        results = [taker.stdout.readline().strip() for taker in takers]  # type: ignore[union-attr]
        for taker in takers:
            taker.communicate(timeout=60)
        assert sorted(results) == ["lost"] * 5 + ["won"], results
        assert sorted(p.name for p in tmp_path.glob(f"k{round_}.lock*")) == [path.name]


def test_a_breaker_left_by_a_killed_taker_does_not_block_takeover(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    dead = replace(container("pid:[111]", "dead-token"), host="other-host")
    path.write_text(json.dumps(asdict(dead)))
    old = time.time() - 3600
    os.utime(path, (old, old))
    (tmp_path / "k.lock.break-dead-token").touch()  # a taker killed mid-takeover
    clock = FakeMonotonic()
    lock = InstallLock(path, log=print, monotonic=clock)
    assert not lock.try_acquire()
    clock.now += lock.heartbeat_s
    assert lock.try_acquire()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.lock"]
    lock.release()
