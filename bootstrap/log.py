"""The start log: one line per phase with its duration, and the state the worker is in.

States: starting, installing, ready, failed. Lines go to stderr through `logging` under the
name "runpod-slim", so RunPod's log view shows them in order with the SDK's own.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

LOGGER = logging.getLogger("runpod-slim")


def default_log(message: str) -> None:
    LOGGER.info(message)


def configure(level: int = logging.INFO) -> None:
    """Send the bootstrap's lines to stderr unless the application configured logging."""
    if not LOGGER.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [runpod-slim] %(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(level)
        LOGGER.propagate = False


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
        self.durations: dict[str, float] = {}

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
            self.durations[name] = self.durations.get(name, 0.0) + took
            detail = "failed" if failed else phase.detail or "done"
            self.log(f"{name}: {detail} ({_fmt(took)})")

    def state(self, state: str, detail: str = "") -> None:
        self.log(f"state={state}" + (f" {detail}" if detail else ""))

    def total(self) -> float:
        return self.clock() - self.started


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
