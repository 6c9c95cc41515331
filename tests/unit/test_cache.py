"""The cache: the install lock and its takeover, atomic publish, leftovers, prune."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bootstrap.cache import (
    LEASE_FRESH_S,
    Layout,
    new_staging,
    publish,
    read_manifest,
    remove_leftovers,
    touch_lease,
    write_manifest,
)
from bootstrap.lock import InstallLock
from bootstrap.prune import list_envs, prune


def make_env(layout: Layout, key: str, published_at: float) -> Path:
    staging = new_staging(layout, key)
    (staging / "site").mkdir()
    write_manifest(staging, {"key": key, "published_at": published_at})
    assert publish(staging, layout.env_dir(key))
    return layout.env_dir(key)


def test_manifest_is_what_makes_an_env_complete(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.mkdir()
    assert read_manifest(env) is None
    (env / "manifest.json").write_text('{"key": "k"')  # torn write
    assert read_manifest(env) is None
    (env / "manifest.json").write_text(json.dumps({"key": "k"}))  # not marked complete
    assert read_manifest(env) is None
    write_manifest(env, {"key": "k"})
    assert read_manifest(env) == {"key": "k", "complete": True}


def test_second_publish_of_a_key_loses_and_keeps_the_first(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.prepare()
    first, second = new_staging(layout, "k"), new_staging(layout, "k")
    for staging, mark in ((first, "first"), (second, "second")):
        (staging / "site").mkdir()
        (staging / "site" / "mark").write_text(mark)
        write_manifest(staging, {"key": "k"})
    assert publish(first, layout.env_dir("k"))
    assert not publish(second, layout.env_dir("k"))
    assert (layout.env_dir("k") / "site" / "mark").read_text() == "first"


def test_leftovers_of_a_key_are_removed(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.prepare()
    dead = new_staging(layout, "k")
    (dead / "site" / "torch").mkdir(parents=True)
    other_key = new_staging(layout, "other")
    mine = new_staging(layout, "k")
    assert remove_leftovers(layout, "k", keep=mine) == [dead]
    assert not dead.exists() and mine.exists() and other_key.exists()


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    a = InstallLock(path, log=print)
    b = InstallLock(path, log=print)
    assert a.try_acquire()
    assert not b.try_acquire()
    assert b.holder() is not None and b.holder().token == a.owner.token  # type: ignore[union-attr]
    a.release()
    assert not path.exists()
    assert b.try_acquire()
    b.release()


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    code = (
        "import sys; from bootstrap.lock import InstallLock; "
        f"assert InstallLock(__import__('pathlib').Path({str(path)!r}), log=print).try_acquire()"
    )
    # The child takes the lock and exits without releasing it: a killed installer.
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": "."})
    assert path.exists()
    logged: list[str] = []
    lock = InstallLock(path, log=logged.append)
    assert lock.try_acquire()
    assert len(logged) == 1 and logged[0].startswith("lock: took over k.lock from pid ")
    assert logged[0].endswith("which is gone")
    lock.release()


def write_foreign_lock(path: Path, age_s: float) -> None:
    owner = {"host": "other-worker", "boot_id": "x", "pid": 1, "token": "t", "since": 0.0}
    path.write_text(json.dumps(owner))
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))


def test_lock_of_another_host_is_respected_while_its_heartbeat_is_fresh(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    write_foreign_lock(path, age_s=5)
    assert not InstallLock(path, log=print).try_acquire()


def test_lock_of_another_host_is_taken_over_when_its_heartbeat_stopped(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    write_foreign_lock(path, age_s=600)
    logged: list[str] = []
    lock = InstallLock(path, log=logged.append)
    assert lock.try_acquire()
    assert logged == ["lock: took over k.lock from pid 1 on other-worker, which is gone"]
    lock.release()


def test_heartbeat_keeps_the_lock_fresh(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    lock = InstallLock(path, log=print, heartbeat_s=0.05)
    assert lock.try_acquire()
    old = time.time() - 600
    os.utime(path, (old, old))
    deadline = time.monotonic() + 10
    while path.stat().st_mtime < time.time() - 60:
        assert time.monotonic() < deadline, "the heartbeat never touched the lock"
        time.sleep(0.01)
    lock.release()


def test_prune_keeps_the_most_recent_and_those_in_use(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.prepare()
    now = time.time()
    envs = {k: make_env(layout, k, now - 10_000 * (i + 1)) for i, k in enumerate("abcde")}
    # Two workers are using the two oldest envs right now: more in use than `keep`.
    touch_lease(envs["e"])
    touch_lease(envs["d"])
    stale = touch_lease(envs["a"])
    old = now - LEASE_FRESH_S - 100
    os.utime(stale, (old, old))  # used long ago: its lease no longer protects it
    layout.lock_file("c").write_text("{}")  # being re-installed
    logged: list[str] = []
    assert prune(layout, 1, dry_run=True, log=logged.append) == ["a", "b"]
    assert all(path.exists() for path in envs.values())
    assert prune(layout, 1, log=logged.append) == ["a", "b"]
    assert sorted(e.key for e in list_envs(layout)) == ["c", "d", "e"]
    assert not envs["b"].exists() and not any(layout.trash.iterdir())
