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
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CacheError

MANIFEST = "manifest.json"
# Another host's lock whose heartbeat is older than this is taken to be dead.
STALE_AFTER_S = 60.0
HEARTBEAT_S = 10.0
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
    path = layout.staging / f"{key}.{_token(12)}"
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
    grave = layout.trash / f"{path.name}.{_token(8)}"
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return
    shutil.rmtree(grave, ignore_errors=True)


def empty_trash(layout: Layout) -> None:
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


# --- the install lock -----------------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its parent has not reaped it yet.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass(frozen=True)
class Owner:
    """Who holds an install lock."""

    host: str
    boot_id: str
    pid: int
    token: str
    since: float

    @staticmethod
    def me(clock: Callable[[], float]) -> Owner:
        return Owner(_hostname(), _boot_id(), os.getpid(), _token(32), clock())

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def read_owner(path: Path) -> Owner | None:
    try:
        data = json.loads(path.read_text())
        return Owner(
            str(data["host"]),
            str(data["boot_id"]),
            int(data["pid"]),
            str(data["token"]),
            float(data["since"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


class InstallLock:
    """One installer per env key across processes and hosts sharing the volume.

    The lock is a file created with O_EXCL (atomic on local and network filesystems alike),
    holding its owner; the owner touches it every HEARTBEAT_S. A lock is stale when its owner
    is a dead process on this host, or when its heartbeat stopped for STALE_AFTER_S; a stale
    lock is taken over, and the takeover is logged.
    """

    def __init__(
        self,
        path: Path,
        *,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        stale_after_s: float = STALE_AFTER_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.path = path
        self.log = log
        self.clock = clock
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.owner = Owner.me(clock)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free or stale; never waits."""
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_owner(self.path)
                if not self._stale(holder):
                    return False
                self._take_over(holder)
                continue
            with os.fdopen(fd, "w") as out:
                json.dump(self.owner.__dict__, out)
                out.flush()
                os.fsync(out.fileno())
            self._start_heartbeat()
            return True
        return False

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        holder = read_owner(self.path)
        if holder is not None and holder.token == self.owner.token:
            self.path.unlink(missing_ok=True)

    def holder(self) -> Owner | None:
        return read_owner(self.path)

    def _stale(self, holder: Owner | None) -> bool:
        try:
            age = self.clock() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        if holder is None:
            # Unreadable: a creator killed between create and write, or one still writing.
            return age > self.heartbeat_s
        if holder.host == self.owner.host and holder.boot_id == self.owner.boot_id:
            return not _pid_alive(holder.pid)
        return age > self.stale_after_s

    def _take_over(self, holder: Owner | None) -> None:
        grave = self.path.with_name(f"{self.path.name}.{_token(8)}.stale")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        moved = read_owner(grave)
        if holder is not None and moved is not None and moved.token != holder.token:
            # A new owner got in between our look and our rename: give its lock back.
            with contextlib.suppress(FileExistsError):
                os.link(grave, self.path)
        else:
            who = holder.describe() if holder else "an unknown owner"
            self.log(f"lock: took over {self.path.name} from {who}, which is gone")
        grave.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                with contextlib.suppress(OSError):
                    os.utime(self.path)

        self._stop.clear()
        self._beat = threading.Thread(target=beat, name="runpod-slim-lock", daemon=True)
        self._beat.start()


# --- use leases and pruning -----------------------------------------------------------------


def lease_path(env_dir: Path) -> Path:
    return env_dir / "leases" / f"{_hostname()}.{os.getpid()}"


def touch_lease(env_dir: Path) -> Path:
    """Mark the env as used by this process (also its last-use time)."""
    lease = lease_path(env_dir)
    try:
        lease.touch()
    except FileNotFoundError:
        lease.parent.mkdir(exist_ok=True)
        lease.touch()
    return lease


@dataclass(frozen=True)
class EnvEntry:
    """One published env, as doctor and prune see it."""

    key: str
    path: Path
    manifest: dict[str, Any]
    last_used: float
    in_use: bool


def list_envs(layout: Layout, clock: Callable[[], float] = time.time) -> list[EnvEntry]:
    """Published envs, most recently used first."""
    entries: list[EnvEntry] = []
    if not layout.envs.is_dir():
        return entries
    now = clock()
    for env_dir in layout.envs.iterdir():
        manifest = read_manifest(env_dir)
        if manifest is None:
            continue
        times = [float(manifest.get("published_at", 0))]
        in_use = False
        leases = env_dir / "leases"
        for lease in leases.iterdir() if leases.is_dir() else ():
            with contextlib.suppress(OSError):
                mtime = lease.stat().st_mtime
                times.append(mtime)
                in_use = in_use or now - mtime < LEASE_FRESH_S
        entries.append(EnvEntry(env_dir.name, env_dir, manifest, max(times), in_use))
    return sorted(entries, key=lambda e: e.last_used, reverse=True)


def prune(
    layout: Layout,
    keep: int,
    *,
    protect: frozenset[str] = frozenset(),
    dry_run: bool = False,
    log: Callable[[str], None],
    clock: Callable[[], float] = time.time,
) -> list[str]:
    """Remove all but the `keep` most recently used envs; never one in use or being installed.

    Returns the keys removed (or that would be, with dry_run).
    """
    removed = []
    for entry in list_envs(layout, clock)[keep:]:
        lock = layout.lock_file(entry.key)
        if entry.in_use or entry.key in protect or lock.exists():
            log(f"prune: keeping {entry.key} (in use or being installed)")
            continue
        removed.append(entry.key)
        if not dry_run:
            discard(layout, entry.path)
            log(f"prune: removed {entry.key}")
    if not dry_run:
        empty_trash(layout)
    return removed


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


def _token(length: int) -> str:
    return os.urandom(length // 2).hex()


def _hostname() -> str:
    return os.uname().nodename


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def held(lock: InstallLock) -> Iterator[InstallLock]:
    try:
        yield lock
    finally:
        lock.release()
