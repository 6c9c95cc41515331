"""The bootstrap's exceptions: one base class, a few kinds, each message actionable.

Every message says what happened, where, and what to do about it. The worker logs the
message as it is and exits, so it must stand on its own in a RunPod log line.
"""

from __future__ import annotations

import errno
import os


class BootstrapError(Exception):
    """Base of every error the bootstrap raises on purpose."""


class SettingsError(BootstrapError):
    """An environment variable has a value the bootstrap cannot use."""

    def __init__(self, variable: str, value: str, allowed: str) -> None:
        self.variable = variable
        self.value = value
        self.allowed = allowed
        super().__init__(f"{variable}={value!r} is not valid: {allowed}")


class PlanError(BootstrapError):
    """No install plan fits this machine; refused before anything is downloaded."""


class FetchError(BootstrapError):
    """A file could not be downloaded, or its bytes were not the expected ones."""

    def __init__(self, url: str, reason: str) -> None:
        from .fetch import redact_url  # an index URL may carry credentials

        self.url = redact_url(url)
        self.reason = reason
        super().__init__(f"could not fetch {self.url}: {reason}")


class InstallError(BootstrapError):
    """The package installer failed."""

    def __init__(self, command: str, exit_code: int, stderr_tail: str, hint: str = "") -> None:
        self.command = command
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.hint = hint
        message = f"{command} exited with status {exit_code}"
        if hint:
            message += f": {hint}"
        if stderr_tail:
            message += f"\n--- last lines of its output ---\n{stderr_tail}"
        super().__init__(message)


class SmokeTestError(BootstrapError):
    """A freshly installed env failed to import what it must; nothing was published."""

    def __init__(self, package: str, stderr_tail: str) -> None:
        self.package = package
        self.stderr_tail = stderr_tail
        super().__init__(
            f"smoke test failed at {package!r}; the env was not published\n"
            f"--- last lines of its output ---\n{stderr_tail}"
        )


class CacheError(BootstrapError):
    """The cache on the volume cannot be used (not writable, full, lock held too long)."""


class InstallTimeoutError(InstallError):
    """The install ran past its deadline (RUNPOD_SLIM_INSTALL_TIMEOUT) and was stopped."""

    def __init__(
        self, command: str, spent_s: float, timeout_s: float, waiting_on: str, stderr_tail: str
    ) -> None:
        self.command = command
        self.exit_code = -9
        self.stderr_tail = stderr_tail
        self.spent_s = spent_s
        self.timeout_s = timeout_s
        self.hint = (
            "check that it answers from this worker, raise "
            "RUNPOD_SLIM_INSTALL_TIMEOUT, or start from a warm cache"
        )
        message = (
            f"the install was stopped after {spent_s:.0f} s, at its deadline "
            f"(RUNPOD_SLIM_INSTALL_TIMEOUT={timeout_s:g}), while {command} was still waiting on "
            f"{waiting_on}: {self.hint}"
        )
        if stderr_tail:
            message += f"\n--- last lines of its output ---\n{stderr_tail}"
        BootstrapError.__init__(self, message)


class DiskFullError(CacheError):
    """A write failed because the filesystem (the volume or local disk) is full."""


class CacheIOError(CacheError):
    """A file operation on the cache failed for another reason (permissions, a lost volume)."""


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
# What a network volume that stopped answering, or went away, looks like from here.
_LOST = (errno.EIO, errno.ESTALE, errno.ENOTCONN, errno.ETIMEDOUT, errno.EHOSTDOWN)


def from_os_error(
    exc: OSError, doing: str, path: os.PathLike[str] | str | None = None
) -> CacheError:
    """One actionable error from an OSError and what was being done when it happened.

    `doing` completes "... failed": "writing the manifest", "unpacking uv". The path is the
    one given, else the one the OSError names. Raise the result `from None`: the message stands
    on its own in a RunPod log line, with no traceback.
    """
    where = path if path is not None else exc.filename
    at = f" at {os.fspath(where)}" if where is not None else ""
    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in _FULL:
        return DiskFullError(
            f"{doing} failed{at}: the disk is full ({what}); free space there "
            f"(python3 -m bootstrap prune removes old envs), or give the worker a larger "
            f"volume or container disk"
        )
    if exc.errno in _DENIED:
        return CacheIOError(
            f"{doing} failed{at}: not writable ({what}); make it writable by this user, or set "
            f"RUNPOD_SLIM_CACHE to a writable directory"
        )
    if exc.errno in _LOST:
        return CacheIOError(
            f"{doing} failed{at}: the filesystem stopped answering ({what}); check that the "
            f"network volume is attached and healthy, then start the worker again"
        )
    return CacheIOError(
        f"{doing} failed{at}: {what}; check that the path is usable, or set RUNPOD_SLIM_CACHE "
        f"to another directory"
    )
