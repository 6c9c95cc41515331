"""doctor's and prune's view of leases: a fresh lease of a process that is gone is not a use."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from bootstrap.cache import Layout, new_staging, publish, write_manifest
from bootstrap.lock import Owner
from bootstrap.prune import list_envs


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
