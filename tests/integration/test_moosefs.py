"""The MooseFS volume the tests and benchmarks use is real: two mounts, one volume.

These check what the install and hydration code will rely on across worker
nodes: bytes and renames made through one mount are seen through the other,
an ``O_EXCL`` create has exactly one winner across mounts (the install lock),
the client's counters move, added latency is really there, and teardown
leaves nothing behind, even after the body raised or the owner was killed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import mmap
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.moosefs import MooseFS, cleanup_stale, moosefs_cluster

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        return {line.split()[4] for line in table}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not true within {timeout}s")
        time.sleep(0.05)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def scratch(moosefs: MooseFS, request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """A fresh directory on the volume, as (path through mount 0, path through mount 1)."""
    name = f"{request.node.name}-{random.randrange(1 << 32):08x}"
    (moosefs.mounts[0] / name).mkdir()
    return moosefs.mounts[0] / name, moosefs.mounts[1] / name


def test_bytes_written_through_one_mount_are_read_through_the_other(
    scratch: tuple[Path, Path],
) -> None:
    a, b = scratch
    rng = random.Random(10)
    # Larger than one 64 MiB chunk, so two chunks; plus many small files.
    big = rng.randbytes(70 * MIB + 13)
    (a / "big.bin").write_bytes(big)
    small = {f"f{i}.txt": rng.randbytes(rng.randrange(1, 20_000)) for i in range(50)}
    for name, data in small.items():
        (a / name).write_bytes(data)

    assert (b / "big.bin").stat().st_size == len(big)
    assert _sha256(b / "big.bin") == hashlib.sha256(big).hexdigest()
    for name, data in small.items():
        assert (b / name).read_bytes() == data
    assert sorted(os.listdir(b)) == sorted(["big.bin", *small])


def test_a_directory_rename_through_one_mount_is_seen_through_the_other(
    scratch: tuple[Path, Path],
) -> None:
    a, b = scratch
    (a / "staging").mkdir()
    (a / "staging" / "lib.so").write_bytes(b"\x7fELF payload")
    assert (b / "staging" / "lib.so").read_bytes() == b"\x7fELF payload"

    os.rename(a / "staging", a / "env")

    assert (b / "env" / "lib.so").read_bytes() == b"\x7fELF payload"
    assert not (b / "staging").exists()


def test_exclusive_create_has_one_winner_across_mounts(scratch: tuple[Path, Path]) -> None:
    rounds, racers = 20, 4  # two threads per mount
    wins: list[list[int]] = [[] for _ in range(rounds)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(racers)

    def race(racer: int) -> None:
        base = scratch[racer % 2]
        try:
            for n in range(rounds):
                barrier.wait(timeout=30)
                try:
                    fd = os.open(base / f"lock{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    continue
                os.write(fd, str(racer).encode())
                os.close(fd)
                wins[n].append(racer)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(r,)) for r in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert [len(w) for w in wins] == [1] * rounds
    for n, winners in enumerate(wins):
        assert (scratch[1] / f"lock{n}").read_text() == str(winners[0])


def test_links_and_mmap_work_across_mounts(scratch: tuple[Path, Path]) -> None:
    a, b = scratch
    library = random.Random(11).randbytes(3 * MIB)
    (a / "lib.so.1").write_bytes(library)
    os.symlink("lib.so.1", a / "lib.so")
    os.link(a / "lib.so.1", a / "lib-hard.so")

    assert os.readlink(b / "lib.so") == "lib.so.1"
    assert os.stat(b / "lib.so.1").st_nlink == 2
    assert os.stat(b / "lib-hard.so").st_ino == os.stat(b / "lib.so.1").st_ino
    # The dynamic loader maps shared libraries executable.
    with (b / "lib.so").open("rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ | mmap.PROT_EXEC)
        try:
            assert mapped[:] == library
        finally:
            mapped.close()


def test_flock_is_held_across_mounts(scratch: tuple[Path, Path]) -> None:
    # Two mounts are two superblocks: the kernel cannot see one lock from the
    # other, so a conflict here comes from the master (a lock for the volume).
    a, b = scratch
    (a / "install.lock").touch()
    with (a / "install.lock").open("rb") as holder, (b / "install.lock").open("rb") as other:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(holder, fcntl.LOCK_UN)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_rename_rules_an_atomic_publish_relies_on(scratch: tuple[Path, Path]) -> None:
    a, b = scratch
    (a / "manifest.json").write_text("old")
    assert (b / "manifest.json").read_text() == "old"
    (a / "manifest.json.tmp").write_text("new")
    os.replace(a / "manifest.json.tmp", a / "manifest.json")
    assert (b / "manifest.json").read_text() == "new"

    (a / "staging").mkdir()
    (a / "staging" / "f").write_text("1")
    (a / "busy").mkdir()
    (a / "busy" / "g").write_text("2")
    with pytest.raises(OSError) as excinfo:
        os.rename(a / "staging", a / "busy")
    assert excinfo.value.errno == errno.ENOTEMPTY
    (a / "empty").mkdir()
    os.rename(a / "staging", a / "empty")
    assert (b / "empty" / "f").read_text() == "1"


def test_a_renamed_directorys_old_name_lingers_briefly_on_the_other_mount(
    scratch: tuple[Path, Path],
) -> None:
    # mfsmount keeps directory entries it looked up for mfsdirentrycacheto
    # (1 s by default): after a rename elsewhere, the old path still resolves
    # here (and reads work through it) for about that long.
    a, b = scratch
    (a / "old").mkdir()
    (a / "old" / "f").write_text("x")
    assert (b / "old" / "f").read_text() == "x"
    os.rename(a / "old", a / "new")
    start = time.monotonic()
    _wait_until(lambda: not (b / "old").exists(), 5, "old name gone from the other mount")
    print(f"\nold directory name visible on the other mount for {time.monotonic() - start:.2f}s")
    assert (b / "new" / "f").read_text() == "x"


def test_client_counters_move_when_files_are_created(
    moosefs: MooseFS, scratch: tuple[Path, Path]
) -> None:
    before = moosefs.stats(0)
    for i in range(10):
        (scratch[0] / f"new{i}").write_bytes(b"x")
    after = moosefs.stats(0)

    assert after["fuse_ops.create"] - before["fuse_ops.create"] >= 10
    assert after["fuse_ops.write"] - before["fuse_ops.write"] >= 10
    assert after["master.packets_sent"] - before["master.packets_sent"] >= 20
    assert after["master.bytes_received"] > before["master.bytes_received"]


def test_remount_is_a_fresh_client_that_sees_the_data(
    moosefs: MooseFS, scratch: tuple[Path, Path]
) -> None:
    (scratch[0] / "kept").write_bytes(b"still here")
    old_pid = moosefs.pids["mount1"]

    point = moosefs.remount(1)

    assert point == moosefs.mounts[1]
    assert moosefs.pids["mount1"] != old_pid
    assert moosefs.stats(1)["fuse_ops.create"] == 0
    assert (scratch[1] / "kept").read_bytes() == b"still here"


def test_remount_refuses_another_thread(moosefs: MooseFS) -> None:
    # A mount started by a short-lived thread would die with it (PDEATHSIG).
    errors: list[BaseException] = []

    def remount() -> None:
        try:
            moosefs.remount(0)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=remount)
    thread.start()
    thread.join(timeout=30)
    assert len(errors) == 1
    assert "thread that started the cluster" in str(errors[0])
    assert (moosefs.mounts[0] / ".stats").exists()


def test_added_latency_is_really_there(
    moosefs: MooseFS, moosefs_factory: Callable[..., MooseFS]
) -> None:
    slow = moosefs_factory(latency_ms=1.0)
    direct_rtt = moosefs.lookup_rtt_us(0)
    slow_rtt = slow.lookup_rtt_us(0)
    pings = [slow.master_ping_us(i) for i in range(len(slow.mounts))]
    print(
        f"\nlookup round trip: {direct_rtt:.0f} us direct, {slow_rtt:.0f} us at 1 ms nominal;"
        f" master.usec_ping at 1 ms: {pings}"
    )
    assert slow_rtt >= 1000
    assert slow_rtt - direct_rtt >= 800
    assert min(pings) >= 900
    # The data path goes through the proxy too.
    (slow.mounts[0] / "through-proxy").write_bytes(b"p" * 100_000)
    assert (slow.mounts[1] / "through-proxy").read_bytes() == b"p" * 100_000


@pytest.mark.usefixtures("require_moosefs")
def test_teardown_leaves_nothing_even_when_the_body_raises(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="body failed"),
        moosefs_cluster(tmp_path, latency_ms=0.5, clients=1) as fs,
    ):
        pids = fs.pids
        namespaces = set(fs.namespaces)
        directory = fs.directory
        busy = (fs.mounts[0] / "open-file").open("wb")  # a mount still busy at teardown
        busy.write(b"x")
        assert namespaces <= _netns_names()
        assert set(pids) == {"master", "chunkserver", "proxy", "mount0"}
        raise RuntimeError("body failed")
    # The volume is gone: closing may fail (ENOTCONN), which is the right answer.
    with contextlib.suppress(OSError):
        busy.close()

    assert not namespaces & _netns_names()
    assert not [p for p in _mount_points() if p.startswith(str(directory))]
    assert not directory.exists()
    _wait_until(lambda: not any(_alive(pid) for pid in pids.values()), 10, "all processes gone")


@pytest.mark.usefixtures("require_moosefs")
def test_leftovers_of_a_killed_run_are_cleaned_up(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.moosefs", "up", "--dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()  # reaps it and closes the pipes
    mounts = info["mounts"]
    # Daemons and mounts die with their owner (PR_SET_PDEATHSIG) ...
    _wait_until(lambda: not any(_alive(p) for p in info["pids"].values()), 10, "daemons gone")
    # ... but the dead mounts and the namespaces stay until someone removes them.
    assert set(mounts) <= _mount_points()

    removed = cleanup_stale()

    assert set(mounts) <= set(removed)
    assert not set(mounts) & _mount_points()
    assert not any(name.startswith(f"mfst{proc.pid}x") for name in _netns_names())


@pytest.mark.parametrize(("ci", "outcome"), [("true", "error"), ("", "skipped")])
def test_missing_moosefs_fails_under_ci_and_skips_elsewhere(
    tmp_path: Path, ci: str, outcome: str
) -> None:
    (tmp_path / "test_uses_volume.py").write_text(
        "from tests.support.moosefs import moosefs, moosefs_factory\n\n"
        "def test_volume(moosefs):\n"
        "    pass\n",
        encoding="utf-8",
    )
    env = {**os.environ, "CI": ci, "PATH": str(tmp_path / "empty"), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # A fixture's pytest.fail() is reported as an error in setup: the run fails.
    assert f"1 {outcome}" in result.stdout, result.stdout + result.stderr
    assert (result.returncode == 0) is (outcome == "skipped")
    assert "MooseFS test dependencies not found" in result.stdout
    assert "scripts/install-test-deps.sh" in result.stdout


@pytest.mark.usefixtures("require_moosefs")
def test_latency_changes_on_a_running_cluster(tmp_path: Path) -> None:
    with moosefs_cluster(tmp_path, latency_ms=0.0, clients=1, via_proxy=True) as fs:
        (fs.mounts[0] / "kept").write_bytes(b"k")
        near = fs.lookup_rtt_us(0)
        fs.set_latency(2.0)
        far = fs.lookup_rtt_us(0)
        assert far >= 2000 and far - near >= 1600, (near, far)
        assert (fs.mounts[0] / "kept").read_bytes() == b"k"
        fs.set_latency(0.0)
        assert fs.lookup_rtt_us(0) < 1000
