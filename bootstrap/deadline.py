"""One deadline for a whole install: provisioning uv, downloads, and the installer's runs.

RunPod stops a worker whose start takes longer than its init timeout (7 minutes by default),
so a stalled index must end the install in bounded time, with an error that says so, rather
than in uv's or pip's own timeouts and retries (which added up to 16 minutes, or hours with
PIP_DEFAULT_TIMEOUT set). Every step of an install takes what is left of the one deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    """When an install must be done by, on a monotonic clock."""

    timeout_s: float
    began: float
    clock: Callable[[], float] = time.monotonic

    @staticmethod
    def start(timeout_s: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """A deadline `timeout_s` from now."""
        return Deadline(timeout_s, clock(), clock)

    def left(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self.began + self.timeout_s - self.clock())

    def spent(self) -> float:
        """Seconds since the deadline started."""
        return self.clock() - self.began

    def expired(self) -> bool:
        return self.left() <= 0.0
