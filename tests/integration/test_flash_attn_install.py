"""The flash-attn path, end to end, with a wheel of the real file name on a local server.

GitHub's release downloads cannot be reached from here, so a local HTTP server stands in for
them (RUNPOD_SLIM_FLASH_ATTN_MIRROR), serving a wheel these tests build under the release's
exact file name. The GPU is an "A100" given as a spec: NVML on a GPU is the other boundary
that cannot exist here. Everything between is real: the plan, the download and its hash
check, uv installing the wheel with --require-hashes into staging, the smoke import, publish.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from bootstrap import ensure, load_settings
from bootstrap.cache import Layout
from bootstrap.errors import FetchError
from bootstrap.gpu import parse_gpu_spec
from bootstrap.plan import FlashAttnRelease
from bootstrap.profiles import Profile
from bootstrap.prune import list_envs
from tests.support.builders import build_wheel, write_lock
from tests.support.http import serve

TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
# A real, tiny package from the index keeps the lock honest (hash-checked by uv).
SIX = (
    "six==1.17.0 \\\n"
    "    --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274\n"
)
PROFILE = Profile("audio", torch=True, flash_attn=True, imports=("six",))
A100 = parse_gpu_spec("NVIDIA A100-SXM4-80GB:8.0:550.54.15")


@pytest.fixture
def release_dir(tmp_path: Path) -> Path:
    root = tmp_path / "releases"
    (root / "v2.8.0.post2").mkdir(parents=True)
    filename = f"flash_attn-2.8.0.post2+cu12torch2.7cxx11abiTRUE-{TAG}-{TAG}-linux_x86_64.whl"
    build_wheel(
        root / "v2.8.0.post2",
        filename,
        {"flash_attn/__init__.py": '__version__ = "2.8.0.post2"\n'},
    )
    return root


def wheel_sha(release_dir: Path) -> str:
    [wheel] = (release_dir / "v2.8.0.post2").iterdir()
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def run(tmp_path: Path, mirror: str, sha256: str) -> object:
    locks = tmp_path / "locks"
    locks.mkdir(exist_ok=True)
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    write_lock(locks, "audio", "cu126", python, SIX)
    settings = load_settings(
        {
            "HANDLER_TYPE": "audio",
            "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
            "RUNPOD_SLIM_VOLUME": str(tmp_path / "no-volume"),
            "RUNPOD_SLIM_FLASH_ATTN_MIRROR": mirror,
        }
    )
    release = FlashAttnRelease("2.8.0.post2", "2.7", cxx11abi=True, sha256={TAG: sha256})
    return ensure(
        settings,
        gpu=A100,
        profile=PROFILE,
        locks_dir=locks,
        flash_attn_release=release,
        activate=False,
        log=print,
    )


def test_flash_attn_wheel_is_fetched_hash_checked_and_installed(
    tmp_path: Path, release_dir: Path
) -> None:
    sha = wheel_sha(release_dir)
    with serve(release_dir) as server:
        env = run(tmp_path, server.url, sha)
        [request] = server.requests
    assert request.startswith("/v2.8.0.post2/flash_attn-2.8.0.post2+cu12torch2.7cxx11abiTRUE-")
    site = env.site_dir  # type: ignore[attr-defined]
    assert (site / "flash_attn" / "__init__.py").is_file()
    assert (site / "six.py").is_file()
    manifest = env.manifest  # type: ignore[attr-defined]
    assert manifest["flash_attn"]["sha256"] == sha
    assert "flash-attn==2.8.0.post2" in manifest["requirements"]
    # The downloaded wheel stays in the cache, keyed by its hash, for the next install.
    cached = list((tmp_path / "cache" / "wheels").rglob("flash_attn-*.whl"))
    assert len(cached) == 1 and hashlib.sha256(cached[0].read_bytes()).hexdigest() == sha


def test_a_wheel_with_the_wrong_hash_is_refused(tmp_path: Path, release_dir: Path) -> None:
    pinned = "0" * 64  # what the code pins; the server has other bytes under that name
    with serve(release_dir) as server, pytest.raises(FetchError) as info:
        run(tmp_path, server.url, pinned)
    assert f"expected {pinned}: not the pinned file, refused" in str(info.value)
    cache = tmp_path / "cache"
    assert list_envs(Layout(cache)) == []
    assert list((cache / "staging").iterdir()) == []
    assert not list((cache / "wheels").rglob("flash_attn-*"))
