"""The handler protocol and what a job sees.

A handler is a class with a `name`, the bootstrap `profile` whose env it runs in, `setup()`
once per worker (models load here) and `run()` per job. `run` is async: handlers that block
(boto3, ffmpeg, model inference) do it in a thread, so the SDK's event loop keeps serving.
Streaming handlers set `streaming = True` and implement `stream()` instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .config import JOB_TIMEOUT_S, BucketCredentials, HandlerConfig
from .errors import JobError

if TYPE_CHECKING:
    from .transfer import JobIO, Target

T = TypeVar("T")

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
    deadline: float = 0.0  # time.monotonic() by which the job must end (0: from the config)
    _credentials: BucketCredentials | None = field(default=None, init=False, repr=False)
    _credentials_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False
    )

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.config.job_timeout_s

    def time_left(self) -> float:
        """Seconds until the job's time limit; a JobError once it has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.out_of_time()
        return left

    def out_of_time(self) -> JobError:
        return JobError(
            f"the job ran past its time limit of {self.config.job_timeout_s} s "
            f"({JOB_TIMEOUT_S}) and was stopped"
        )

    async def within_time(self, work: Awaitable[T]) -> T:
        """`work` awaited until the job's deadline; cancelled (child processes killed) after.

        Cancelling reaches every await inside: run_ffmpeg kills ffmpeg, a stream stops asking
        for the next piece. A thread cannot be killed; the ones jobs start check the deadline
        themselves (downloads, at every read) or finish one short piece of work.
        """
        try:
            return await asyncio.wait_for(work, self.time_left())
        except TimeoutError:
            raise self.out_of_time() from None

    def progress(self, message: str) -> None:
        """Tell the caller how far the job is (RunPod's /status shows it)."""
        self.report_progress(message)

    def keep_secret(self, value: str | None) -> None:
        if value:
            self.secrets.append(value)

    # --- the job's files: every source and result goes through these two -------------------

    def credentials(self) -> BucketCredentials:
        """The job's S3 credentials: input.credentials, else the worker's BUCKET_* settings.

        Checked once per job, whichever transfer asks first (a source, a result, an action);
        the job's own secrets are kept for redaction before any check can show them.
        """
        from .transfer import credentials_for

        with self._credentials_lock:
            if self._credentials is None:
                self._credentials = credentials_for(self.input, self.config, self.secrets)
            return self._credentials

    def io(self) -> JobIO:
        """This job as its transfers see it (id, limits, deadline, credentials)."""
        from .transfer import JobIO

        return JobIO(self.id, self.config, self.credentials, self.deadline)

    def fetch(
        self,
        name: str,
        url: str | None,
        data: str | None,
        dest: Target | None = None,
    ) -> tuple[Path, str | None]:
        """The file given as `input.<name>` (a URL) or `input.<name>_base64`: exactly one.

        The one place that rule is written, and where every base64 field is capped. Lands at
        `dest` (default: `<workdir>/<name>`), written atomically, under the size limit:
        (local path, sha256). A volume:// source is read in place (its own path, no sha256
        yet). Blocking: run in a thread.
        """
        from . import transfer

        if (url is None) == (data is None):
            raise JobError(f"give exactly one of input.{name} and input.{name}_base64")
        target = dest if dest is not None else self.workdir / name
        if url is not None:
            self.progress(f"fetching {transfer.shown_url(url)}")
            return transfer.fetch_source(url, f"input.{name}", target, self.io())
        return transfer.decode_base64(data or "", f"input.{name}_base64", target, self.config)

    def deliver(
        self,
        path: Path,
        destination: str | None,
        *,
        field: str = "input.destination",
        expires_s: int = 3600,
    ) -> dict[str, Any]:
        """Put a result file at `destination` (s3://, volume://, a presigned PUT URL), or
        inline when it fits a RunPod response.

        Returns the output fields (see transfer.deliver); a result too big to return inline
        goes to the worker's results place, saying so ("offloaded"). Blocking: run in a thread.
        """
        from . import transfer

        return transfer.deliver(path, destination, field, self.io(), expires_s=expires_s)

    def fit_output(self, output: dict[str, Any]) -> dict[str, Any]:
        """The job's whole output as RunPod will take it (its JSON is what counts): as it is,
        or put in the worker's results place when over /run's 10 MB (see transfer.outputs).
        Blocking: run in a thread."""
        from . import transfer

        return transfer.fit_output(output, self.workdir, self.io())

    def checked_chunk(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """A streamed chunk, once known to fit RunPod's 1 MB per chunk (else a JobError)."""
        from . import transfer

        transfer.check_stream_chunk(chunk, "a streamed chunk")
        return chunk

    def check_destination(
        self,
        destination: str | None,
        most_bytes: int | None = None,
        *,
        field: str = "input.destination",
    ) -> None:
        """Refuse the job now, before its heavy work, when its result could not be delivered.

        A destination given must be one deliver() takes (s3://, volume://, an http(s) PUT
        URL), well formed. Without one, a result of up to `most_bytes` (when the handler can
        bound it in advance) must fit inline, or the worker must have a place to offload it.
        """
        from . import transfer, volume

        if destination is None:
            transfer.check_room(most_bytes, field, self.config)
            return
        scheme = transfer.scheme_of(destination, field, transfer.DESTINATION_SCHEMES)
        if scheme == "s3":
            transfer.parse_s3(destination, field)
        elif scheme == "volume":
            volume.parse(destination, field, self.config)


MODEL_CACHE = "hub"  # under the cache root: out of every job's reach (handlers.volume)


def model_cache_environ(config: HandlerConfig) -> dict[str, str]:
    """Where torch hub and Hugging Face downloads go: the volume's cache, when there is one.

    Without this they land in ~/.cache, on the container's disk, again on every new worker.
    Under the cache root, jobs cannot write them (a model is code: pickles, remote code).
    """
    if not config.volume.is_dir():
        return {}
    root = config.cache_root / MODEL_CACHE
    return {"TORCH_HOME": str(root / "torch"), "HF_HOME": str(root / "huggingface")}


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

    def __init__(self, config: HandlerConfig, settings: object | None = None) -> None:
        """`config`: what every handler shares. `settings`: the handler's own (its catalog
        settings module's), which a handler class takes typed, keeps as `self.settings`, and
        reads from the environment itself when none is given."""
        self.config = config
        self.setup_error: str | None = None  # set by the worker when setup() raised
        quiet_sdk_debug_log()
        for name, value in model_cache_environ(config).items():
            os.environ.setdefault(name, value)  # the user's own choice wins

    def setup(self) -> None:
        """Load what every job needs; runs once per worker, before the first job."""

    async def run(self, job: JobContext) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, job: JobContext) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError
