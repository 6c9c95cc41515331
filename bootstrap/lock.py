"""One installer per env key across processes and hosts sharing the volume.

Only the cold path imports this module: a warm start never takes a lock.

Who holds a lock is a per-process token, not a pid: every containerised worker is pid 1 in its
own PID namespace, and a restarted container keeps its host name, so "pid 1 on host h" names
a different process after each restart. A holder proves it is alive by its heartbeat (it
touches the lock file every HEARTBEAT_S); a lock whose heartbeat has not moved for
STALE_AFTER_S, as watched by the waiter's own monotonic clock, is stale, whatever host or pid
it names. A pid is used only to prove death sooner: when the holder ran in this very PID
namespace of this very boot and no process with its pid and start time exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .cache import hostname, random_token
from .errors import from_os_error

# A heartbeat that has not moved for this long, as the waiter watches it, means its holder is
# dead (or cut off from the volume, which is as good as dead for the install it was doing).
STALE_AFTER_S = 60.0
HEARTBEAT_S = 10.0
# A heartbeat older than this by the waiter's wall clock is stale without watching it first;
# the margin keeps a holder whose clock runs a few minutes behind ours from looking dead.
_CLOCK_SKEW_S = 300.0


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot); None if it is gone or a zombie."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    # fields[0] is the state (field 3 of stat(5)); the start time is field 22.
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class Owner:
    """Who holds an install lock: a token unique to one process, and where it ran."""

    host: str
    boot_id: str
    pid_ns: str  # "pid:[4026531836]": pids mean something only inside one namespace
    pid: int
    start_ticks: int  # with the pid, one process of one boot: pids are reused
    token: str
    since: float

    @staticmethod
    def me(clock: Callable[[], float] = time.time) -> Owner:
        """This process."""
        pid = os.getpid()
        return Owner(
            hostname(),
            _read("/proc/sys/kernel/random/boot_id"),
            _pid_namespace(),
            pid,
            _start_ticks(pid) or 0,
            random_token(32),
            clock(),
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def provably_dead(self, me: Owner) -> bool:
        """True only when this owner ran where `me` runs and its process is gone."""
        if not (self.boot_id and self.pid_ns and self.start_ticks):
            return False  # a lock written by an older bootstrap: its heartbeat decides
        if (self.host, self.boot_id, self.pid_ns) != (me.host, me.boot_id, me.pid_ns):
            return False
        if self.pid == me.pid:
            return self.start_ticks != me.start_ticks
        return _start_ticks(self.pid) != self.start_ticks


def read_owner(path: Path) -> Owner | None:
    """The owner written in a lock file, or None when it is absent or unreadable."""
    try:
        data = json.loads(path.read_text())
        return Owner(
            str(data["host"]),
            str(data["boot_id"]),
            str(data.get("pid_ns", "")),
            int(data["pid"]),
            int(data.get("start_ticks", 0)),
            str(data["token"]),
            float(data["since"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class InstallLock:
    """One installer per env key across processes and hosts sharing the volume.

    Taking a free lock links a fully written file into place (atomic, and never seen half
    written). Taking over a stale one is a race between waiters that exactly one wins: each
    first creates `<lock>.break-<holder token>` with O_EXCL, and only its creator may move the
    stale lock aside; the others see the lock fresh again, or taken, and keep waiting.
    """

    def __init__(
        self,
        path: Path,
        *,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        stale_after_s: float = STALE_AFTER_S,
        heartbeat_s: float = HEARTBEAT_S,
        owner: Owner | None = None,
    ) -> None:
        self.path = path
        self.log = log
        self.clock = clock
        self.monotonic = monotonic
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.owner = owner or Owner.me(clock)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        # The holder's heartbeat as last seen, and when (our monotonic clock) it last moved.
        self._seen: tuple[object, ...] | None = None
        self._seen_since = 0.0
        self._breaker_seen: tuple[int, float] | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free or stale; never waits."""
        for _ in range(3):
            if self._create():
                self._start_heartbeat()
                return True
            holder = read_owner(self.path)
            signature = self._signature(holder)
            if signature is None:
                continue  # released between our try and our look: try again
            if not self._stale(holder, signature):
                return False
            if not self._take_over(holder, signature):
                return False
        return False

    def release(self) -> None:
        """Stop the heartbeat and remove the lock, if it is still ours."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        holder = read_owner(self.path)
        if holder is not None and holder.token == self.owner.token:
            self.path.unlink(missing_ok=True)

    def holder(self) -> Owner | None:
        return read_owner(self.path)

    def _create(self) -> bool:
        new = self.path.with_name(f"{self.path.name}.{self.owner.token[:16]}.new")
        try:
            with new.open("w") as out:
                json.dump(asdict(self.owner), out)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            new.unlink(missing_ok=True)
            raise from_os_error(exc, "creating the install lock", self.path) from None
        try:
            os.link(new, self.path)
        except FileExistsError:
            return False
        except OSError:
            # No hard links here: create in place (a reader may briefly see it empty).
            return self._create_in_place()
        finally:
            new.unlink(missing_ok=True)
        return True

    def _create_in_place(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(self.owner), out)
            out.flush()
            os.fsync(out.fileno())
        return True

    def _signature(self, holder: Owner | None) -> tuple[object, ...] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, holder.token if holder else None)

    def _stale(self, holder: Owner | None, signature: tuple[object, ...]) -> bool:
        now = self.monotonic()
        if signature != self._seen:
            self._seen, self._seen_since = signature, now
        if holder is not None and holder.provably_dead(self.owner):
            return True
        if now - self._seen_since >= self.stale_after_s:
            return True  # we watched its heartbeat stand still for the whole stale bound
        mtime_s = float(signature[1]) / 1e9  # type: ignore[arg-type]
        return self.clock() - mtime_s > self.stale_after_s + _CLOCK_SKEW_S

    def _take_over(self, holder: Owner | None, signature: tuple[object, ...]) -> bool:
        """Move the stale lock aside if we win the race to; True to try creating ours."""
        name = holder.token[:16] if holder else f"ino{signature[0]}"
        breaker = self.path.with_name(f"{self.path.name}.break-{name}")
        try:
            os.close(os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            # Another waiter is taking it over, unless it was killed doing so.
            return self._clear_abandoned(breaker)
        try:
            now = self._signature(read_owner(self.path))
            if now is None or now[0] != signature[0] or now[2] != signature[2]:
                return True  # released or replaced since we looked: try to create ours
            grave = self.path.with_name(f"{self.path.name}.{random_token(8)}.stale")
            try:
                os.rename(self.path, grave)
            except FileNotFoundError:
                return True
            moved = read_owner(grave)
            if moved is not None and holder is not None and moved.token != holder.token:
                # Its holder released it and a new one took it between our look and our move.
                with contextlib.suppress(FileExistsError):
                    os.link(grave, self.path)
                grave.unlink(missing_ok=True)
                return False
            grave.unlink(missing_ok=True)
            who = holder.describe() if holder else "an unknown owner"
            self.log(f"lock: took over {self.path.name} from {who}, which is gone")
            self._seen = None
            return True
        finally:
            breaker.unlink(missing_ok=True)

    def _clear_abandoned(self, breaker: Path) -> bool:
        # A taker holds its breaker for a moment; one killed inside _take_over leaves it behind,
        # which would block every takeover of that holder. One we have seen stand for a
        # heartbeat is abandoned.
        try:
            seen = breaker.stat().st_ino
        except OSError:
            return False
        now = self.monotonic()
        if self._breaker_seen is None or self._breaker_seen[0] != seen:
            self._breaker_seen = (seen, now)
            return False
        if now - self._breaker_seen[1] < self.heartbeat_s:
            return False
        breaker.unlink(missing_ok=True)
        self._breaker_seen = None
        return True

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                with contextlib.suppress(OSError):
                    os.utime(self.path)

        self._stop.clear()
        self._beat = threading.Thread(target=beat, name="runpod-slim-lock", daemon=True)
        self._beat.start()
