"""A full disk during a start is one line naming the path, what happened and what to do.

The disk is a real 1 MB tmpfs that the tests fill; the writes that fail are the real ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bootstrap.cache import Layout
from bootstrap.errors import DiskFullError
from bootstrap.fetch import download
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
    filename, _ = UV_WHEELS["x86_64"]
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    with zipfile.ZipFile(wheelhouse / filename, "w") as wheel:  # a uv bigger than the disk
        wheel.writestr(f"uv-{UV_VERSION}.data/scripts/uv", os.urandom(2_000_000))
    with small_disk(tmp_path / "disk") as disk:
        settings = load_settings(
            {"RUNPOD_SLIM_CACHE": str(disk / "cache"), "RUNPOD_SLIM_WHEELHOUSE": str(wheelhouse)}
        )
        layout = Layout(settings.cache_root)
        with pytest.raises(DiskFullError) as info:
            provision_uv(settings, layout, log=print, machine="x86_64")
        assert list(layout.tools.iterdir()) == []  # the half-unpacked dir was removed
    staging = layout.tools / f".uv-{UV_VERSION}-x86_64.{os.getpid()}"
    assert str(info.value).startswith(f"unpacking uv {UV_VERSION} failed at {staging}: {FULL}")


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
