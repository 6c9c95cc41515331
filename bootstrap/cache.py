"""The content-addressed cache on the volume: layout, install lock, publish, prune.

    <root>/envs/<key>/        a published env: site/ (the packages) and manifest.json
    <root>/envs/<key>/leases/ one file per process using the env, touched while it runs
    <root>/staging/<key>.<token>/   an install in progress (never read by a start)
    <root>/locks/<key>.lock   who is installing <key>
    <root>/uv-cache/          uv's cache: same filesystem, so installs are hard links
    <root>/wheels/ tools/     pinned downloads (flash-attn, pynvml, uv)
    <root>/trash/             what is being deleted

Readers only ever see complete envs: an install goes to staging, the manifest is written last,
and staging is renamed to envs/<key> in one atomic step. The lock only saves duplicate work;
correctness comes from the rename, which fails for the second of two racing installers.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import CacheError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from typing import Any

MANIFEST = "manifest.json"
# A lease touched this recently marks its env as in use; a worker touches its lease each minute.
LEASE_FRESH_S = 300.0
LEASE_HEARTBEAT_S = 60.0


@dataclass(frozen=True)
class Layout:
    """Where everything lives under one cache root."""

    root: Path

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def uv_cache(self) -> Path:
        return self.root / "uv-cache"

    @property
    def wheels(self) -> Path:
        return self.root / "wheels"

    @property
    def tools(self) -> Path:
        return self.root / "tools"

    @property
    def trash(self) -> Path:
        return self.root / "trash"

    def env_dir(self, key: str) -> Path:
        return self.envs / key

    def lock_file(self, key: str) -> Path:
        return self.locks / f"{key}.lock"

    def prepare(self) -> None:
        """Create the directories, or say why the cache root cannot be used."""
        try:
            for path in (self.envs, self.staging, self.locks, self.uv_cache, self.trash):
                path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"cannot create the cache under {self.root}: {exc.strerror or exc}. Set "
                f"RUNPOD_SLIM_CACHE to a writable directory, or attach a network volume"
            ) from None


def read_manifest(env_dir: Path) -> dict[str, Any] | None:
    """The env's manifest, or None when the env is absent or incomplete."""
    try:
        data = json.loads((env_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("complete") is True else None


def write_manifest(staging: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest into staging, durably, as the last step before publishing."""
    tmp = staging / f".{MANIFEST}.tmp"
    with tmp.open("w") as out:
        json.dump({**manifest, "complete": True}, out, indent=2, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, staging / MANIFEST)
    _fsync_dir(staging)


def new_staging(layout: Layout, key: str) -> Path:
    path = layout.staging / f"{key}.{random_token(12)}"
    path.mkdir(parents=True)
    return path


def publish(staging: Path, env_dir: Path) -> bool:
    """Rename staging to its final name; False when another installer published first."""
    try:
        os.rename(staging, env_dir)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    _fsync_dir(env_dir.parent)
    return True


def discard(layout: Layout, path: Path) -> None:
    """Remove a directory: renamed into trash first, so it is gone from view at once."""
    if not path.exists():
        return
    layout.trash.mkdir(parents=True, exist_ok=True)
    grave = layout.trash / f"{path.name}.{random_token(8)}"
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return
    import shutil

    shutil.rmtree(grave, ignore_errors=True)


def set_aside(layout: Layout, env_dir: Path, why: str, log: Callable[[str], None]) -> None:
    """Take a damaged published env out of view (under its key's lock), saying why."""
    log(f"cache: env {env_dir.name} is damaged ({why}); setting it aside to install it again")
    discard(layout, env_dir)


def empty_trash(layout: Layout) -> None:
    import shutil

    if layout.trash.is_dir():
        for entry in layout.trash.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def remove_leftovers(layout: Layout, key: str, keep: Path | None = None) -> list[Path]:
    """Staging dirs of `key` left by killed installs; call only while holding key's lock."""
    removed = []
    for entry in layout.staging.glob(f"{key}.*"):
        if entry != keep:
            discard(layout, entry)
            removed.append(entry)
    return removed


# --- use leases -----------------------------------------------------------------------------


def lease_path(env_dir: Path) -> Path:
    return env_dir / "leases" / f"{hostname()}.{os.getpid()}"


def touch_lease(env_dir: Path) -> Path:
    """Mark the env as used by this process (also its last-use time).

    A new lease names its process (an `Owner`, as the install lock does), so that doctor and
    prune can tell a lease whose process is gone from one whose process is alive.
    """
    lease = lease_path(env_dir)
    try:
        os.utime(lease)
    except FileNotFoundError:
        import dataclasses

        from .lock import Owner

        lease.parent.mkdir(exist_ok=True)
        lease.write_text(json.dumps(dataclasses.asdict(Owner.me())))
    return lease


def dir_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under path, hard links counted once."""
    seen: set[tuple[int, int]] = set()
    total = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                files += 1
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total, files


def random_token(length: int) -> str:
    return os.urandom(length // 2).hex()


def hostname() -> str:
    return os.uname().nodename


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
