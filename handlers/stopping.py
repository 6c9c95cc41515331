"""What a worker does on SIGTERM: stop its running jobs, remove their folders, then go.

RunPod scales a worker down with SIGTERM, and SIGKILL follows after a short grace; the local
API server gets the same from whoever runs it. The RunPod SDK installs its own SIGTERM
handler when it starts serving (the job loop's, or uvicorn's, which waits for running requests
to end however long they take) and chains to nothing. So the worker's handler is put back in
front of whichever one is installed at every job's start (`job()`, on the event loop's thread,
where Python lets a handler be set) and passes the signal on to the one it found:

- each running job is cancelled, and answers that the worker stopped before it ended (its
  child processes die with the cancellation: handlers.base.JobContext.within_time);
- the worker's job folders are removed at once (handlers.workdirs), so nothing is left even if
  the SIGKILL comes before the SDK has finished;
- the SDK's own handler runs, or the default action (the process ends) when there was none.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

LOG = logging.getLogger("runpod-slim")
STOPPED = (
    "the worker was stopped (SIGTERM) before this job ended; nothing was kept of it: run the "
    "job again"
)

SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Stopping:
    """The worker's SIGTERM handling: which jobs run, and what to do when told to stop."""

    def __init__(self, on_stop: Callable[[], None]) -> None:
        self._on_stop = on_stop
        self._jobs: dict[asyncio.Task[Any], asyncio.AbstractEventLoop] = {}
        self.stopping = False

    def install(self) -> None:
        """Handle SIGTERM from now on, in front of whatever handles it now (main thread only)."""
        current = signal.getsignal(signal.SIGTERM)
        if getattr(current, "runpod_slim_stopping", None) is self:
            return
        passed_on: SignalHandler = current

        def handle(signum: int, frame: FrameType | None) -> None:
            self._stop()
            _pass_on(passed_on, signum, frame)

        handle.runpod_slim_stopping = self  # type: ignore[attr-defined]
        try:
            signal.signal(signal.SIGTERM, handle)
        except ValueError:  # not the main thread: the SDK runs this loop elsewhere
            LOG.debug("SIGTERM handler not installed: not on the main thread")

    @contextmanager
    def job(self) -> Iterator[None]:
        """Around one job, on the event loop: the job is cancelled if SIGTERM comes."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self.install()  # the SDK may have put its own handler in front of ours since
        self._jobs[task] = asyncio.get_running_loop()
        try:
            yield
        finally:
            self._jobs.pop(task, None)

    def cancelled(self) -> bool:
        """Whether a CancelledError just caught is this worker stopping (not the SDK's own)."""
        if not self.stopping:
            return False
        task = asyncio.current_task()
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+: the answer goes out normally
        if uncancel is not None:
            uncancel()
        return True

    def _stop(self) -> None:
        first = not self.stopping
        self.stopping = True
        if first:
            LOG.warning(
                "SIGTERM: stopping %d running job(s) and removing the job folders", len(self._jobs)
            )
        for task, loop in list(self._jobs.items()):
            # A signal handler runs between two bytecodes of the loop's thread: ask the loop.
            loop.call_soon_threadsafe(task.cancel)
        self._on_stop()


def _pass_on(handler: SignalHandler, signum: int, frame: FrameType | None) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL or handler is None:
        # What SIGTERM would have done without us: end the process, by the signal.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
