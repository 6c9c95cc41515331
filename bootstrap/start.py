"""What one start works with, passed from ensure() to the modules that act for it."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .cache import Layout
from .log import StartLog
from .settings import Settings

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from .runner import Runner


@dataclass(frozen=True)
class Start:
    """What one start works with, passed down instead of eight arguments."""

    settings: Settings
    layout: Layout  # the cache (on the volume, when there is one)
    local: Layout  # container disk: hydrated envs, and installs of packed envs
    store: str  # "packed" or "in-place" (bootstrap/store.py)
    log: StartLog
    environ: Mapping[str, str]
    runner: Runner | None  # None: the real one, imported on the cold path only
    which: Callable[[str], str | None] | None  # None: shutil.which, on the cold path only
    sleep: Callable[[float], None]


def failpoint(settings: Settings, name: str) -> None:
    """Kill this process here when the test setting names this point (kill -9 tests)."""
    if settings.failpoint == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
