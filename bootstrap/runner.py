"""Running an installer: one command, its output streamed line by line, its group killed on time.

Every command goes through a `Runner`, so tests can watch the exact command lines, and its output
reaches the log line by line (uv's "Downloading torch (825.1MiB)" lines are the download
progress). Installers run in their own process group, die with the bootstrap (a parent-death
signal), and are killed, group and all, at the install's deadline.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

_TAIL_LINES = 40
# user:password@ in a URL an installer prints; never logged or put in an error.
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s:]+(?::[^/@\s]*)?@")
_PR_SET_PDEATHSIG = 1


class Runner(Protocol):
    """Runs a command, feeding each output line to on_line; returns (exit code, last lines).

    With timeout_s, the command (and everything it started) is killed after that long.
    """

    def __call__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None,
        on_line: Callable[[str], None],
        timeout_s: float | None = None,
    ) -> tuple[int, list[str]]: ...


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGKILL the child when the bootstrap dies (Linux)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]  # resolved here, not in the forked child

    def set_pdeathsig() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return set_pdeathsig


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def redact_line(line: str) -> str:
    """An installer's output line without credentials in any URL it names."""
    return _CREDENTIALS.sub("***@", line)


def run_streaming(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | None,
    on_line: Callable[[str], None],
    timeout_s: float | None = None,
) -> tuple[int, list[str]]:
    """The real Runner: stdout and stderr merged, streamed line by line.

    The child leads its own process group, so that a kill at the deadline, or when the
    bootstrap is stopped, takes whatever it started too; and it is sent SIGKILL by the kernel
    if the bootstrap dies first, so an orphaned uv never keeps writing into the cache.
    """
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=_parent_death_signal(),  # noqa: PLW1509 (no locks taken in the child)
    ) as proc:
        timer = None
        if timeout_s is not None:
            timer = threading.Timer(timeout_s, _kill_group, (proc,))
            timer.daemon = True
            timer.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = redact_line(raw.rstrip())
                if line:
                    tail.append(line)
                    on_line(line)
            code = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:  # the bootstrap is being stopped: take the group with it
                _kill_group(proc)
                proc.wait()
    return code, list(tail)
