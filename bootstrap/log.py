"""The start log: one line per phase with its duration, and the state the worker is in.

States: starting, installing, ready, failed. Lines go straight to stderr, without `logging`
(whose import alone would cost a warm start a tenth of its budget), in the format that
`configure()` gives the worker's own "runpod-slim" logger, so RunPod's log view shows one
kind of line.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

LINE_FORMAT = "%(asctime)s [runpod-slim] %(message)s"


def default_log(message: str) -> None:
    """One line on stderr, stamped as `logging` would stamp it."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    sys.stderr.write(f"{stamp},{int(now % 1 * 1000):03d} [runpod-slim] {message}\n")
    sys.stderr.flush()


def configure() -> None:
    """Give the worker's "runpod-slim" logger the bootstrap's line format, on stderr."""
    import logging

    logger = logging.getLogger("runpod-slim")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LINE_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


class Phase:
    """A phase in progress; set `detail` to say what it found."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.detail = ""


class StartLog:
    """Times phases and writes one line for each."""

    def __init__(
        self,
        log: Callable[[str], None] = default_log,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.log = log
        self.clock = clock
        self.started = clock()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        phase = Phase(name)
        begin = self.clock()
        failed = True
        try:
            yield phase
            failed = False
        finally:
            took = self.clock() - begin
            detail = "failed" if failed else phase.detail or "done"
            self.log(f"{name}: {detail} ({_fmt(took)})")

    def state(self, state: str, detail: str = "") -> None:
        self.log(f"state={state}" + (f" {detail}" if detail else ""))

    def total(self) -> float:
        return self.clock() - self.started


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
