"""Where jobs keep their temporary files: one folder per worker, gone when the worker goes.

Every job's private folder is made inside one parent folder per worker process,
`<tmp>/runpod-slim-jobs-<random>/`. The worker holds an exclusive flock on a file inside it
for as long as it lives: the kernel drops the lock when the process dies, however it dies
(SIGKILL included), so a lock that can be taken is proof that its owner is gone. Each start
removes the parents of dead workers; a worker removes its own at exit and on SIGTERM
(handlers/stopping.py).

The lock is the test, not a pid: every containerised worker is pid 1, and pids are reused.
flock is local to one kernel: the temporary directory is the container's own disk, which is
what it must be for this to hold (not a network file system).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PARENT_PREFIX = "runpod-slim-jobs-"
# handlers/redaction.py cuts paths into folders of this prefix out of every error and log.
JOB_PREFIX = "runpod-slim-job-"
OWNER_FILE = "owner.lock"
# A parent with no lock file yet is being made (mkdtemp, then the lock a moment later), or its
# maker died in that moment: only after this long is it taken for the latter.
UNLOCKED_GRACE_S = 60.0


class WorkerStopping(Exception):
    """The worker has begun to stop (SIGTERM): no new job folder is made."""


class JobDirs:
    """This worker's parent folder of job folders, locked for the worker's life."""

    def __init__(self, root: Path, lock_fd: int) -> None:
        self.root = root
        self._lock_fd: int | None = lock_fd
        self._pid = os.getpid()

    @classmethod
    def claim(
        cls, parent: Path | None = None, *, log: Callable[[str], None] = lambda line: None
    ) -> JobDirs:
        """Sweep dead workers' folders from `parent` (the system's temp dir), then make ours."""
        parent = Path(parent or tempfile.gettempdir())
        for removed in sweep(parent):
            log(f"removed the job folders of a worker that is gone: {removed}")
        while True:
            root = Path(tempfile.mkdtemp(prefix=PARENT_PREFIX, dir=parent))
            try:
                fd = os.open(root / OWNER_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:  # a sweep removed it in the moment before the lock
                continue
            # Blocking: only a sweeper can hold it, and only while it removes the folder.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, root / OWNER_FILE):
                return cls(root, fd)
            os.close(fd)  # a sweeper took the lock first and removed the folder: make another

    @contextlib.contextmanager
    def job_dir(self) -> Iterator[Path]:
        """A new private folder for one job, removed when the job ends, whatever its outcome."""
        if self._lock_fd is None:
            raise WorkerStopping("the worker is stopping")
        try:
            path = Path(tempfile.mkdtemp(prefix=JOB_PREFIX, dir=self.root))
        except FileNotFoundError:  # removed by a SIGTERM that arrived a moment ago
            raise WorkerStopping("the worker is stopping") from None
        try:
            yield path
        finally:
            # Gone already when the worker was told to stop while this job ran.
            shutil.rmtree(path, ignore_errors=True)

    def remove(self) -> None:
        """Remove every job folder and the parent, and let go of the lock. Idempotent.

        Called at exit and from a signal handler; in a forked child (which inherits the
        registration, not the ownership), it does nothing.
        """
        if self._lock_fd is None or os.getpid() != self._pid:
            return
        fd, self._lock_fd = self._lock_fd, None
        shutil.rmtree(self.root, ignore_errors=True)
        os.close(fd)  # last: while the folder goes, no sweeper can take it for a dead one's


def sweep(
    parent: Path, *, grace_s: float = UNLOCKED_GRACE_S, clock: Callable[[], float] = time.time
) -> list[Path]:
    """Remove the parent folders in `parent` whose owning worker is gone; returns them."""
    removed: list[Path] = []
    try:
        candidates = sorted(parent.glob(PARENT_PREFIX + "*"))
    except OSError:
        return removed
    for folder in candidates:
        if folder.is_symlink() or not folder.is_dir():
            continue  # only what a worker made: a folder, never followed through a link
        lock = folder / OWNER_FILE
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            if _age(folder, clock) >= grace_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            continue
        except OSError:
            continue  # not ours to judge (a link planted in place of the lock, no access)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its worker is alive
            if _same_file(fd, lock):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        finally:
            os.close(fd)
    return removed


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (a sweep unlinks what it takes)."""
    try:
        named, held = path.stat(), os.fstat(fd)
    except OSError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _age(path: Path, clock: Callable[[], float]) -> float:
    try:
        return clock() - path.lstat().st_mtime
    except OSError:
        return 0.0
