"""A full disk during a start is one line naming the path, what happened and what to do.

The disk is a real 1 MB tmpfs that the tests fill; the writes that fail are the real ones.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap.cache import Layout
from bootstrap.errors import DiskFullError
from bootstrap.fetch import download, index_file_url
from bootstrap.installer import UV_VERSION, UV_WHEELS, provision_uv
from bootstrap.settings import load_settings
from tests.support.http import closed_port_url, serve
from tests.support.small_disk import fill, small_disk

REPO = Path(__file__).resolve().parents[2]
FULL = "the disk is full (No space left on device); free space there"


def test_a_download_onto_a_full_disk_fails_at_once_naming_the_path(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "big.whl").write_bytes(os.urandom(3_000_000))
    with serve(served) as server, small_disk(tmp_path / "disk") as disk:
        with pytest.raises(DiskFullError) as info:
            download(
                f"{server.url}/big.whl",
                disk / "wheels" / "big.whl",
                "0" * 64,
                ca_bundle=None,
                retries=3,
                log=print,
            )
        assert server.requests == ["/big.whl"]  # a full disk is not retried
        assert list((disk / "wheels").iterdir()) == []  # no partial download left
    assert str(info.value).startswith(f"saving big.whl failed at {disk}/wheels: {FULL}")


def test_unpacking_uv_onto_a_full_disk_names_where(tmp_path: Path) -> None:
    filename, sha256 = UV_WHEELS["x86_64"]
    wheelhouse = tmp_path / "wheelhouse"
    # The real pinned wheel (a wheelhouse's wheels are used only when they are the pinned
    # bytes): its uv is far bigger than the disk.
    index = load_settings({})
    url = index_file_url(index.index_url, "uv", filename, ca_bundle=index.ca_bundle)
    download(url, wheelhouse / filename, sha256, ca_bundle=index.ca_bundle, retries=3, log=print)
    with small_disk(tmp_path / "disk") as disk:
        settings = load_settings(
            {"RUNPOD_SLIM_CACHE": str(disk / "cache"), "RUNPOD_SLIM_WHEELHOUSE": str(wheelhouse)}
        )
        layout = Layout(settings.cache_root)
        with pytest.raises(DiskFullError) as info:
            provision_uv(settings, layout, log=print, machine="x86_64")
        assert list(layout.tools.iterdir()) == []  # the half-unpacked dir was removed
    staging = re.escape(f"{layout.tools}/.uv-{UV_VERSION}-x86_64.")  # then a random token
    pattern = f"unpacking uv {re.escape(UV_VERSION)} failed at {staging}[0-9a-f]{{12}}: "
    assert re.match(pattern, str(info.value)), str(info.value)
    assert FULL in str(info.value)


def test_a_worker_starting_on_a_full_disk_says_so_in_one_line(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        (disk / "cache").mkdir()
        fill(disk)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_SLIM_")}
        started = subprocess.run(
            [sys.executable, str(REPO / "handler.py")],
            cwd=tmp_path,
            env={
                **env,
                "HANDLER_TYPE": "storage",
                "RUNPOD_SLIM_CACHE": str(disk / "cache"),
                "RUNPOD_SLIM_VOLUME": str(tmp_path / "no-volume"),
                "RUNPOD_SLIM_GPU": "none",
                "RUNPOD_SLIM_INDEX_URL": closed_port_url(),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert started.returncode == 1
    assert "Traceback" not in started.stderr
    [line] = [x for x in started.stderr.splitlines() if "the worker cannot start" in x]
    assert f" failed at {disk}/cache/" in line and FULL in line, line


def packed_env(tmp_path: Path, small_files: int) -> tuple[Layout, str, str]:
    """A packed env on a 'volume' (a local dir): a 3 MiB large file and `small_files` small
    ones of 64 KiB of random bytes; (cache, key, manifest sha256)."""
    import hashlib

    from bootstrap.cache import write_manifest
    from bootstrap.packed import pack
    from bootstrap.store import sentinels

    site = tmp_path / "build" / "site"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (site / "pkg" / "weights.bin").write_bytes(os.urandom(3 << 20))
    for i in range(small_files):
        (site / "pkg" / f"table{i}.bin").write_bytes(os.urandom(64 << 10))
    key = "storage-none-cp311-0123456789abcdef"
    cache = Layout(tmp_path / "cache")
    env = cache.env_dir(key)
    write_manifest(env, {"key": key, "sentinels": sentinels(site), "parts": pack(site, env)})
    return cache, key, hashlib.sha256((env / "manifest.json").read_bytes()).hexdigest()


def hydrate_onto(disk: Path, cache: Layout, key: str, said: list[str]) -> Path:
    """Hydrate the env as a start does, with container disk `disk` and large files copied."""
    from bootstrap.hydration import hydrate_env
    from bootstrap.log import StartLog
    from bootstrap.start import Start
    from bootstrap.store import find

    settings = load_settings(
        {
            "HANDLER_TYPE": "storage",
            "RUNPOD_SLIM_CACHE": str(cache.root),
            "RUNPOD_SLIM_LOCAL_DIR": str(disk),
            "RUNPOD_SLIM_BIG_FILES": "copy",
        }
    )
    ctx = Start(
        settings, cache, Layout(disk), "packed", StartLog(said.append), {}, None, None, print
    )
    env = hydrate_env(key, find(cache, Layout(disk), key), ctx)
    assert env is not None
    return env.site_dir


def test_large_files_that_do_not_fit_container_disk_are_linked_and_the_log_says_so(
    tmp_path: Path,
) -> None:
    cache, key, _ = packed_env(tmp_path, small_files=2)
    said: list[str] = []
    with small_disk(tmp_path / "disk", size="2m") as disk:
        site = hydrate_onto(disk, cache, key, said)
        weights = site / "pkg" / "weights.bin"
        assert weights.is_symlink() and weights.stat().st_size == 3 << 20
        assert (site / "pkg" / "table1.bin").stat().st_size == 64 << 10
    [line] = [x for x in said if "too little to copy" in x]
    assert re.fullmatch(
        rf"hydrate: {disk} has \d+ MB free, too little to copy the env's 3 MB of large files "
        r"too; linking them to the volume instead",
        line,
    ), line


def test_small_files_that_do_not_fit_container_disk_stop_the_start_in_one_line(
    tmp_path: Path,
) -> None:
    from bootstrap.errors import CacheError

    cache, key, _ = packed_env(tmp_path, small_files=40)  # 2.6 MB, on a 1 MB disk
    with small_disk(tmp_path / "disk", size="1m") as disk:
        with pytest.raises(CacheError) as refused:
            hydrate_onto(disk, cache, key, [])
        assert list(disk.glob("envs/*")) == [] and list(disk.glob("staging/*")) == []
    assert re.fullmatch(
        rf"{disk} has 1 MB free and the env's small files need 3 MB: point "
        r"RUNPOD_SLIM_LOCAL_DIR at a larger disk, or give the container more disk",
        str(refused.value),
    ), refused.value
