"""bootstrap.store: which store a start uses, and what it checks before using an env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bootstrap.cache import Layout, write_manifest
from bootstrap.packed import pack
from bootstrap.store import (
    check_sentinels,
    choose,
    find,
    finish_local,
    new_local_staging,
    sentinels,
    sweep_local_staging,
)

KEY = "storage-none-cp311-0123456789abcdef"


def site_with_packages(root: Path) -> Path:
    site = root / "site"
    (site / "boto3").mkdir(parents=True)
    (site / "boto3" / "__init__.py").write_text("x = 1\n")
    (site / "six.py").write_text("y = 2\n")
    (site / "boto3-1.0.dist-info").mkdir()
    return site


def publish_in_place(cache: Layout) -> Path:
    env = cache.env_dir(KEY)
    site = site_with_packages(env)
    write_manifest(env, {"key": KEY, "sentinels": sentinels(site)})
    return env


def publish_packed(cache: Layout, tmp: Path) -> Path:
    site = site_with_packages(tmp / "build")
    env = cache.env_dir(KEY)
    parts = pack(site, env)
    write_manifest(env, {"key": KEY, "sentinels": sentinels(site), "parts": parts})
    return env


def test_choose_packs_only_across_file_systems(tmp_path: Path) -> None:
    assert choose("auto", tmp_path / "a" / "cache", tmp_path / "b") == "in-place"
    assert choose("auto", Path("/proc/runpod-slim"), tmp_path) == "packed"
    assert choose("packed", tmp_path, tmp_path) == "packed"
    assert choose("in-place", Path("/proc"), tmp_path) == "in-place"


def test_sentinels_name_top_level_modules(tmp_path: Path) -> None:
    site = site_with_packages(tmp_path)
    assert sentinels(site) == [["boto3/__init__.py", 6], ["six.py", 6]]
    manifest = {"sentinels": sentinels(site)}
    assert check_sentinels(site, manifest) == ""
    (site / "boto3" / "__init__.py").unlink()
    assert check_sentinels(site, manifest) == f"{site}/boto3/__init__.py is missing"
    (site / "six.py").write_text("changed\n")
    manifest["sentinels"] = [["six.py", 6]]
    assert check_sentinels(site, manifest) == f"{site}/six.py has 8 bytes, its manifest says 6"


def test_find_in_place(tmp_path: Path) -> None:
    cache, local = Layout(tmp_path / "cache"), Layout(tmp_path / "local")
    assert find(cache, local, KEY).detail.startswith("cold")
    env = publish_in_place(cache)
    found = find(cache, local, KEY)
    assert found.env is not None and found.env.path == env and not found.damaged
    (env / "site" / "six.py").unlink()
    assert find(cache, local, KEY).damaged == f"{env}/site/six.py is missing"


def test_damaged_manifests_are_named(tmp_path: Path) -> None:
    cache, local = Layout(tmp_path / "cache"), Layout(tmp_path / "local")
    env = publish_in_place(cache)
    manifest = env / "manifest.json"
    manifest.write_text(manifest.read_text()[:20])
    assert "is truncated or not a complete manifest" in find(cache, local, KEY).damaged
    manifest.write_text("")
    assert "is truncated" in find(cache, local, KEY).damaged
    manifest.unlink()
    assert find(cache, local, KEY).damaged == f"{env} has no manifest.json"


def test_find_packed_hydrate_then_warm_locally(tmp_path: Path) -> None:
    cache, local = Layout(tmp_path / "cache"), Layout(tmp_path / "local")
    env = publish_packed(cache, tmp_path)
    found = find(cache, local, KEY)
    assert found.env is None and found.manifest is not None and found.manifest_sha256
    # A worker set to keep envs in place still uses a packed one, as it was published.
    assert find(cache, local, KEY).manifest is not None

    staging, fd = new_local_staging(local, KEY)
    (staging / "site").mkdir()
    (staging / "site" / "six.py").write_text("y = 2\n")
    (staging / "site" / "boto3").mkdir()
    (staging / "site" / "boto3" / "__init__.py").write_text("x = 1\n")
    local_env = finish_local(local, KEY, staging, fd, found.manifest_sha256)
    again = find(cache, local, KEY)
    assert again.env is not None and again.env.path == local_env and again.env.home == env

    # The volume's env was set aside and rebuilt: its new manifest means hydrating anew.
    raw = json.loads((env / "manifest.json").read_text())
    write_manifest(env, {**raw, "published_at": 2.0})
    assert find(cache, local, KEY).env is None
    # A file missing from the local copy: hydrate again, too.
    write_manifest(env, raw)
    assert find(cache, local, KEY).env is not None
    (local_env / "site" / "six.py").unlink()
    assert find(cache, local, KEY).env is None


def test_sweep_removes_only_dead_processes_staging(tmp_path: Path) -> None:
    local = Layout(tmp_path / "local")
    mine, fd = new_local_staging(local, KEY)
    # A staging dir whose process was killed: its flock went with it.
    dead = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from bootstrap.cache import Layout;"
            "from bootstrap.store import new_local_staging;"
            f"print(new_local_staging(Layout(Path({str(local.root)!r})), 'k')[0])",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    never_locked = local.staging / "k.unlocked"
    never_locked.mkdir()
    sweep_local_staging(local)
    assert mine.is_dir()
    assert not Path(dead).exists() and not never_locked.exists()
    os.close(fd)
