"""The handler protocol and what a job sees.

A handler is a class with a `name`, the bootstrap `profile` whose env it runs in, `setup()`
once per worker (models load here) and `run()` per job. `run` is async: handlers that block
(boto3, ffmpeg, model inference) do it in a thread, so the SDK's event loop keeps serving.
Streaming handlers set `streaming = True` and implement `stream()` instead.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .config import HandlerConfig

LOG = logging.getLogger("runpod-slim")


@dataclass
class JobContext:
    """One job: its id, its raw input, a private temporary directory, and progress."""

    id: str
    input: Mapping[str, Any]
    workdir: Path  # removed when the job ends, whatever its outcome
    config: HandlerConfig
    report_progress: Callable[[str], None] = field(default=lambda message: None)
    secrets: list[str] = field(default_factory=list)  # redacted from every error and log

    def progress(self, message: str) -> None:
        """Tell the caller how far the job is (RunPod's /status shows it)."""
        self.report_progress(message)

    def keep_secret(self, value: str | None) -> None:
        if value:
            self.secrets.append(value)


def quiet_sdk_debug_log() -> None:
    """Keep the RunPod SDK's log at INFO or above, when the SDK is loaded.

    runpod 1.12 logs every job's whole output at DEBUG, and DEBUG is its default level: the
    presigned URLs a job returns would land in the worker's log whole. Its logger's level is a
    plain attribute of its one RunPodLogger (its own set_level() would print a line too).
    """
    module = sys.modules.get("runpod.serverless.modules.rp_logger")
    if module is None:
        return
    logger = module.RunPodLogger()
    levels = list(module.LOG_LEVELS)
    if logger.level in levels and levels.index(logger.level) < levels.index("INFO"):
        logger.level = "INFO"


class Handler:
    """Base class of the four handlers (and the adapter of a custom one)."""

    name: ClassVar[str] = ""
    profile: ClassVar[str] = ""  # the bootstrap profile this handler's env is built from
    streaming: ClassVar[bool] = False
    # Example job inputs, run by the local harness and the tests.
    examples: ClassVar[tuple[Mapping[str, Any], ...]] = ()

    def __init__(self, config: HandlerConfig) -> None:
        self.config = config
        self.setup_error: str | None = None  # set by the worker when setup() raised
        quiet_sdk_debug_log()

    def setup(self) -> None:
        """Load what every job needs; runs once per worker, before the first job."""

    async def run(self, job: JobContext) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, job: JobContext) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError
