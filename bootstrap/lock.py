"""One installer per env key across processes and hosts sharing the volume.

Only the cold path imports this module: a warm start never takes a lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cache import hostname, random_token

# Another host's lock whose heartbeat is older than this is taken to be dead.
STALE_AFTER_S = 60.0
HEARTBEAT_S = 10.0


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
        return Owner(hostname(), _boot_id(), os.getpid(), random_token(32), clock())

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
        grave = self.path.with_name(f"{self.path.name}.{random_token(8)}.stale")
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
