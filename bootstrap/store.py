"""Where a published env lives, and how a start finds it ready to use.

Two stores (RUNPOD_SLIM_ENV_STORE):

- in place: envs/<key>/site is the env, used where it is. Right when the cache is on the same
  disk as the worker (no network volume, a pod's local disk).
- packed: envs/<key>/ on the volume holds a few large files (bootstrap/packed.py), and each
  container hydrates them once onto its own disk, under <local>/envs/<key>/, which it then
  uses for the rest of its life. Right on RunPod's network volume (MooseFS), where each small
  file costs round trips.

`auto` packs when the cache and the local dir are on different file systems.

Either way a start checks what it is about to use, at a cost that fits a warm start: the
manifest must parse and be complete, and the top-level module files it lists (a few hundred
stats on local disk, about a millisecond) must be there with their sizes. A container's
hydrated copy is also tied to the exact manifest it came from, so an env set aside and
rebuilt on the volume is hydrated anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .cache import MANIFEST, Layout, discard, random_token
from .env import ReadyEnv

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from typing import Any

MARKER = "hydrated.json"
_HYDRATING = ".hydrating"  # flock'ed by the process that fills a local staging dir


@dataclass(frozen=True)
class Found:
    """What a lookup found for one key."""

    env: ReadyEnv | None = None  # ready to activate
    manifest: dict[str, Any] | None = None  # packed on the volume, to hydrate
    manifest_sha256: str = ""
    damaged: str = ""  # why the published env cannot be used: set it aside, install again
    detail: str = "cold, not in the cache"


def choose(env_store: str, cache_root: Path, local_root: Path) -> str:
    """'packed' or 'in-place' for this start (see the module's docstring)."""
    if env_store != "auto":
        return env_store
    return "in-place" if _device(cache_root) == _device(local_root) else "packed"


def find(layout: Layout, local: Layout, key: str) -> Found:
    """The env for `key`: ready, to hydrate, damaged, or absent.

    An env is used in the form it was published in, whatever this worker's own store setting
    (which decides only how the envs it installs are published): a worker never sets aside a
    sound env because another worker sharing the volume was configured otherwise.
    """
    env_dir = layout.env_dir(key)
    try:
        raw = (env_dir / MANIFEST).read_bytes()
    except FileNotFoundError:
        if env_dir.is_dir():
            return Found(damaged=f"{env_dir} has no {MANIFEST}")
        return Found()
    except OSError as exc:
        return Found(damaged=f"{env_dir / MANIFEST} cannot be read ({exc.strerror})")
    manifest = _parse(raw)
    if manifest is None:
        return Found(damaged=f"{env_dir / MANIFEST} is truncated or not a complete manifest")
    if "parts" not in manifest:
        missing = check_sentinels(env_dir / "site", manifest)
        if missing:
            return Found(damaged=missing)
        return Found(ReadyEnv(key, env_dir, manifest, cold=False), detail="warm, in place")
    digest = hashlib.sha256(raw).hexdigest()
    local_env = local.env_dir(key)
    if _marker_sha256(local_env) == digest and not check_sentinels(local_env / "site", manifest):
        env = ReadyEnv(key, local_env, manifest, cold=False, home=env_dir)
        return Found(env, detail="warm, hydrated on this container's disk")
    return Found(manifest=manifest, manifest_sha256=digest, detail="warm, packed on the volume")


def sentinels(site: Path) -> list[list[object]]:
    """[relative path, size] of each top-level module file: what a warm start checks."""
    found: list[list[object]] = []
    for entry in sorted(os.scandir(site), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            init = os.path.join(entry.path, "__init__.py")
            with contextlib.suppress(OSError):
                found.append([f"{entry.name}/__init__.py", os.stat(init).st_size])
        elif entry.name.endswith((".py", ".so", ".pth")):
            found.append([entry.name, os.stat(entry.path).st_size])
    return found


def check_sentinels(site: Path, manifest: dict[str, Any]) -> str:
    """'' when every file the manifest lists is there with its size; else what is wrong."""
    for rel, size in manifest.get("sentinels", ()):
        try:
            have = os.stat(site / rel).st_size
        except OSError:
            return f"{site / rel} is missing"
        if have != size:
            return f"{site / rel} has {have} bytes, its manifest says {size}"
    return ""


def new_local_staging(local: Layout, key: str) -> tuple[Path, int]:
    """A staging dir on container disk, flock'ed while this process fills it: (path, fd)."""
    import fcntl

    path = local.staging / f"{key}.{random_token(12)}"
    path.mkdir(parents=True)
    fd = os.open(path / _HYDRATING, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return path, fd


def sweep_local_staging(local: Layout) -> None:
    """Remove staging dirs on container disk whose process is gone (its flock went with it)."""
    import fcntl

    if not local.staging.is_dir():
        return
    for entry in local.staging.iterdir():
        try:
            fd = os.open(entry / _HYDRATING, os.O_RDWR)
        except FileNotFoundError:
            discard(local, entry)  # killed before it took its lock
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live process is filling it
        finally:
            os.close(fd)
        discard(local, entry)


def finish_local(local: Layout, key: str, staging: Path, fd: int, manifest_sha256: str) -> Path:
    """Mark a filled local staging dir as the hydrated copy of that manifest, and move it in."""
    mark_hydrated(staging, key, manifest_sha256)
    return adopt_local(local, key, staging, fd)


def adopt_local(local: Layout, key: str, staging: Path, fd: int) -> Path:
    """Move a filled local staging dir into place; it counts as hydrated once it is marked."""
    release_hydrating(staging, fd)
    env_dir = local.env_dir(key)
    if not _move_in(local, staging, env_dir):
        discard(local, staging)  # another process of this container hydrated it first
    return env_dir


def adopt_filling(local: Layout, key: str, staging: Path) -> Path | None:
    """Move a staging dir still being filled into place, its `.hydrating` lock still held
    (bootstrap/backfill.py fills it, then release_hydrating); None when another process of
    this container moved its own copy in first."""
    env_dir = local.env_dir(key)
    return env_dir if _move_in(local, staging, env_dir) else None


def _move_in(local: Layout, staging: Path, env_dir: Path) -> bool:
    local.envs.mkdir(parents=True, exist_ok=True)
    wait_hydrating(env_dir)  # another process of this container still filling its copy
    discard(local, env_dir)  # an older copy, of a manifest since replaced, or one left unfinished
    try:
        os.rename(staging, env_dir)
    except OSError:
        return False
    return True


def release_hydrating(local_env: Path, fd: int) -> None:
    """Drop the `.hydrating` lock: the dir is filled (marked, when it is a hydrated copy)."""
    (local_env / _HYDRATING).unlink()
    os.close(fd)


def wait_hydrating(local_env: Path) -> None:
    """Wait while a live process of this container is still filling `local_env`."""
    import fcntl

    try:
        fd = os.open(local_env / _HYDRATING, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when that process's lock fd closes
    finally:
        os.close(fd)


def mark_hydrated(local_env: Path, key: str, manifest_sha256: str) -> None:
    """Tie a local copy to the published manifest it matches (written last, atomically)."""
    partial = local_env / f".{MARKER}.{random_token(8)}"
    partial.write_text(json.dumps({"key": key, "manifest_sha256": manifest_sha256}))
    os.replace(partial, local_env / MARKER)


def _marker_sha256(local_env: Path) -> str:
    try:
        data = json.loads((local_env / MARKER).read_text())
    except (OSError, ValueError):
        return ""
    return str(data.get("manifest_sha256", "")) if isinstance(data, dict) else ""


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("complete") is True else None


def _device(path: Path) -> int:
    """The file system of `path`, or of its nearest existing parent."""
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            return os.stat(candidate).st_dev
    return -1
