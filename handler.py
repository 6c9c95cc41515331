"""The worker's entry point: bootstrap, then serve jobs with the handler HANDLER_TYPE names.

    python3 handler.py                                  serve (on RunPod)
    python3 handler.py --test_input '{"input": {...}}'  run one job locally and exit
    python3 handler.py --rp_serve_api --rp_api_port 8000    the SDK's local API server

Nothing runs at import: main() reads every setting once (the bootstrap's, the handlers'
shared config and the chosen handler's own), makes sure the handler's env is installed and
active (bootstrap.ensure), and only then imports the handler and the RunPod SDK, which live in
that env.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bootstrap.env import ReadyEnv
    from bootstrap.settings import Settings
    from handlers.base import Handler
    from handlers.config import HandlerConfig
    from handlers.stopping import Stopping
    from handlers.workdirs import JobDirs

LOG = logging.getLogger("runpod-slim")
JobFunction = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class WorkerSettings:
    """Every setting a worker reads, parsed once from one environment, before any install."""

    bootstrap: Settings
    config: HandlerConfig | None  # the handlers' shared config; None for a custom handler
    handler: object | None  # the chosen handler's own settings (its catalog settings module)


def read_settings(environ: Mapping[str, str]) -> WorkerSettings:
    """The worker's settings; a bad value raises bootstrap.errors.SettingsError naming it.

    Only the chosen handler's own settings are read: another handler's bad value never stops
    this worker. All of it is standard library, so it runs before anything is installed.
    """
    import handlers
    from bootstrap.settings import load_settings
    from handlers.config import load_config

    settings = load_settings(environ)
    if settings.custom is not None:
        return WorkerSettings(settings, None, None)
    name = settings.handler_type
    config = load_config(environ, bootstrap=settings)
    return WorkerSettings(settings, config, handlers.load_own_settings(name, environ))


def main(environ: Mapping[str, str] = os.environ) -> int:
    """Bootstrap, set the handler up once, and hand it to the RunPod SDK."""
    from bootstrap import BootstrapError, ensure
    from bootstrap.errors import from_os_error
    from bootstrap.log import configure
    from bootstrap.profiles import profile_for
    from handlers.errors import HandlerError

    configure()
    try:
        # Checked before anything is installed: a bad value must not cost a cold install first.
        parsed = read_settings(environ)
        settings = parsed.bootstrap
        profile = None if settings.custom else profile_for(settings)
        # On a new container the env's rest may still be hydrating while the SDK and the
        # handler import (bootstrap/backfill.py); whole() waits for it before the first job.
        env = ensure(settings, environ=environ, profile=profile, whole=False)
        env.hold()
        env.isolate()
    except (BootstrapError, HandlerError) as exc:
        LOG.error("the worker cannot start: %s", exc)
        return 1
    except OSError as exc:  # a full disk, a lost volume: one line that says what to do
        LOG.error("the worker cannot start: %s", from_os_error(exc, "the start"))
        return 1

    from handlers.sdk import import_runpod

    began = time.perf_counter()
    runpod = import_runpod()  # from the env ensure() just activated

    LOG.info(
        "sdk: import runpod %s (%.0f ms)", runpod.__version__, (time.perf_counter() - began) * 1000
    )

    if settings.custom is not None:
        from handlers.custom import describe, load_function

        function, error = load_function(settings.custom)
        if error:
            LOG.error("%s", error)
        else:
            LOG.info(
                "state=ready custom handler %s, a %s", settings.custom.target, describe(function)
            )
        if one_shot(environ, sys.argv):
            function = drained(function)
        if not whole(env):
            return 1
        runpod.serverless.start({"handler": function, "return_aggregate_stream": True})
        return 0

    workdirs, stopping = claim_job_dirs()
    handler = build_handler(environ, parsed)
    on_runpod = bool(environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))

    def progress(job: dict[str, Any], message: str) -> None:
        if on_runpod:
            runpod.serverless.progress_update(job, message)
        LOG.info("job %s: %s", job.get("id", "?"), message)

    job_function = adapt(handler, progress, workdirs=workdirs, stopping=stopping)
    if one_shot(environ, sys.argv):
        job_function = drained(job_function)
    if not whole(env):
        return 1
    runpod.serverless.start({"handler": job_function, "return_aggregate_stream": True})
    return 0


def whole(env: ReadyEnv) -> bool:
    """Wait until every file of the env is in place (False, said in one line, if it cannot be)."""
    from bootstrap import BootstrapError

    try:
        env.wait_whole()
    except BootstrapError as exc:
        LOG.error("the worker cannot start: %s", exc)
        return False
    return True


def one_shot(environ: Mapping[str, str], argv: list[str]) -> bool:
    """True for the SDK's local one-job mode (`--test_input` or test_input.json)."""
    serving = "--rp_serve_api" in argv or bool(environ.get("RUNPOD_WEBHOOK_GET_JOB"))
    return not serving


def drained(function: Callable[..., Any]) -> Callable[..., Any]:
    """A streaming function as one that returns the list of its chunks.

    The SDK's local one-job mode returns a generator handler's generator without running it;
    on RunPod and in the local API server, streams are consumed and aggregated by the SDK.
    """
    import inspect

    if inspect.isasyncgenfunction(function):

        async def collect_async(job: dict[str, Any]) -> list[Any]:
            return [chunk async for chunk in function(job)]

        return collect_async
    if inspect.isgeneratorfunction(function):

        def collect(job: dict[str, Any]) -> list[Any]:
            return list(function(job))

        return collect
    return function


def claim_job_dirs() -> tuple[JobDirs, Stopping]:
    """This worker's folder of job folders (dead workers' swept), removed at exit and SIGTERM."""
    from handlers.stopping import Stopping
    from handlers.workdirs import JobDirs

    workdirs = JobDirs.claim(log=LOG.info)
    atexit.register(workdirs.remove)
    stopping = Stopping(workdirs.remove)
    stopping.install()
    return workdirs, stopping


def build_handler(environ: Mapping[str, str], parsed: WorkerSettings | None = None) -> Handler:
    """The chosen handler, set up once; a setup failure is kept on it, not raised.

    `parsed` is what main() read before the install; without it (tests, benches) the
    settings are read from `environ` here.
    """
    import handlers

    if parsed is None:
        parsed = read_settings(environ)
    assert parsed.config is not None, "a custom handler is served by main(), not built"
    handler_class = handlers.load(parsed.bootstrap.handler_type)
    handler = handler_class(parsed.config, parsed.handler)
    began = time.perf_counter()
    try:
        handler.setup()
        took = (time.perf_counter() - began) * 1000
        LOG.info("state=ready handler=%s set up (%.0f ms)", handler.name, took)
    except Exception as exc:
        # What the jobs report: the message, not the exception's type (the log has the rest).
        handler.setup_error = str(exc) or "it failed without saying why; the worker's log has it"
        LOG.error(
            "handler %s setup failed; every job will report it:\n%s",
            handler.name,
            traceback.format_exc(),
        )
    return handler


def adapt(
    handler: Handler,
    progress: Callable[[dict[str, Any], str], None],
    *,
    workdirs: JobDirs | None = None,
    stopping: Stopping | None = None,
) -> Callable[[dict[str, Any]], Any]:
    """The function the SDK calls per job: one error shape, temp files always removed.

    Each job gets a private folder inside `workdirs` (this worker's; claimed here when not
    given); `stopping` cancels running jobs on SIGTERM, which then answer that they stopped.
    """
    from handlers.base import JobContext
    from handlers.errors import JobError
    from handlers.redaction import redact
    from handlers.stopping import STOPPED, Stopping
    from handlers.workdirs import JobDirs

    if workdirs is None:
        workdirs = JobDirs.claim(log=LOG.info)
        atexit.register(workdirs.remove)
    if stopping is None:
        stopping = Stopping(workdirs.remove)
    dirs, stop = workdirs, stopping

    def context(job: dict[str, Any], workdir: Path) -> JobContext:
        raw = job.get("input")
        if not isinstance(raw, dict):
            raise JobError(f"input must be a JSON object, got {type(raw).__name__}")
        secrets = list(handler.config.secrets())
        return JobContext(
            id=job_id(job),
            input=raw,
            workdir=workdir,
            config=handler.config,
            report_progress=lambda message: progress(job, redact(message, secrets)),
            secrets=secrets,
        )

    if handler.streaming:

        async def stream_job(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
            if handler.setup_error:
                yield {"error": f"{handler.name} setup failed: {handler.setup_error}"}
                return
            secrets: list[str] = list(handler.config.secrets())
            with stop.job():
                try:
                    with dirs.job_dir() as tmp:
                        ctx = context(job, tmp)
                        secrets = ctx.secrets
                        async for chunk in handler.stream(ctx):
                            yield ctx.checked_chunk(chunk)
                except asyncio.CancelledError:
                    if not stop.cancelled():
                        raise
                    yield {"error": STOPPED}
                except Exception as exc:
                    yield failure(handler.name, exc, job, secrets)

        return stream_job

    async def run_job(job: dict[str, Any]) -> dict[str, Any]:
        if handler.setup_error:
            return {"error": f"{handler.name} setup failed: {handler.setup_error}"}
        secrets: list[str] = list(handler.config.secrets())
        with stop.job():
            try:
                with dirs.job_dir() as tmp:
                    ctx = context(job, tmp)
                    secrets = ctx.secrets
                    output: dict[str, Any] = await handler.run(ctx)
                    # RunPod refuses a result over 10 MB (/run): the job's whole JSON counts.
                    return await asyncio.to_thread(ctx.fit_output, output)
            except asyncio.CancelledError:
                if not stop.cancelled():
                    raise
                return {"error": STOPPED}
            except Exception as exc:
                return failure(handler.name, exc, job, secrets)

    return run_job


def failure(
    handler_name: str, exc: BaseException, job: Mapping[str, Any], secrets: list[str]
) -> dict[str, Any]:
    """A job's failure as the one error string the caller gets (call inside `except`)."""
    from handlers.errors import HandlerError
    from handlers.redaction import redact
    from handlers.stopping import STOPPED
    from handlers.workdirs import WorkerStopping

    if isinstance(exc, HandlerError):  # raised on purpose: its message is for the caller
        return {"error": redact(str(exc), secrets)}
    if isinstance(exc, WorkerStopping):
        return {"error": STOPPED}
    # A bug, or an input no check foresaw: the operator gets the traceback (secrets redacted),
    # the caller one sentence with no exception type and no path in it.
    LOG.error(
        "job %s failed in the %s handler:\n%s",
        job_id(job),
        handler_name,
        redact(traceback.format_exc(), secrets),
    )
    return {
        "error": f"the {handler_name} handler failed on this job; the worker's log has the "
        f"details (job {job_id(job)})"
    }


def job_id(job: Mapping[str, Any]) -> str:
    """The job's id as errors and logs show it (RunPod's own; "local" in a one-shot run)."""
    return str(job.get("id", "local"))[:80]


if __name__ == "__main__":
    sys.exit(main())
