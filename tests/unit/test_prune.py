"""doctor's and prune's view of leases: a fresh lease of a process that is gone is not a use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from bootstrap.cache import Layout, new_staging, publish, write_manifest
from bootstrap.lock import Owner
from bootstrap.prune import list_envs, prune


def make_env(layout: Layout, key: str) -> Path:
    layout.prepare()
    staging = new_staging(layout, key)
    (staging / "site").mkdir()
    write_manifest(staging, {"key": key, "published_at": time.time() - 3600})
    assert publish(staging, layout.env_dir(key))
    (layout.env_dir(key) / "leases").mkdir()
    return layout.env_dir(key)


def test_a_fresh_lease_of_an_exited_process_is_not_in_use(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    me = Owner.me()
    exited = replace(me, start_ticks=me.start_ticks - 1, token="one-shot")  # our pid, before us
    gone, live, plain = (make_env(layout, key) for key in ("gone", "live", "plain"))
    (gone / "leases" / "worker.1").write_text(json.dumps(asdict(exited)))
    (live / "leases" / "worker.2").write_text(json.dumps(asdict(me)))
    (plain / "leases" / "worker.3").touch()  # a lease without an owner: freshness decides
    in_use = {entry.key: entry.in_use for entry in list_envs(layout)}
    assert in_use == {"gone": False, "live": True, "plain": True}
    # The exited process's lease still says when the env was last used.
    [entry] = [e for e in list_envs(layout) if e.key == "gone"]
    assert entry.last_used == os.stat(gone / "leases" / "worker.1").st_mtime


def test_prune_folds_stale_leases_and_keeps_the_last_use(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    env = make_env(layout, "kept")
    old = time.time() - 1800  # stale, and after the env was published
    for n in range(5):  # one per worker start that was killed
        lease = env / "leases" / f"worker.{n}"
        lease.touch()
        os.utime(lease, (old + n, old + n))
    fresh = env / "leases" / "worker.live"
    fresh.touch()
    [before] = list_envs(layout)
    prune(layout, keep=1, log=lambda line: None)
    assert sorted(p.name for p in (env / "leases").iterdir()) == [".last-used", "worker.live"]
    os.utime(fresh, (old - 10, old - 10))  # now only the folded marker says when it was used
    [after] = list_envs(layout)
    assert after.last_used == pytest.approx(old + 4, abs=1)
    assert before.in_use and not after.in_use


def test_a_worker_removes_its_lease_when_it_exits(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    env = make_env(layout, "used")
    code = (
        "import sys; from pathlib import Path; from bootstrap.env import ReadyEnv;"
        f"e = ReadyEnv('used', Path({str(env)!r}), {{}}, cold=False); e.hold();"
        "print(len(list((e.path / 'leases').iterdir())))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip() == "1"  # held while it ran
    assert list((env / "leases").iterdir()) == []  # and gone after
