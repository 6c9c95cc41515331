"""handler.py's adapter and the registry: one error shape, setup failures kept, temp cleaned.

Each behaviour has its own tiny fixture handler, defined here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import handlers
from bootstrap.errors import SettingsError
from handler import adapt, build_handler, drained, one_shot, read_settings
from handlers.base import Handler, JobContext
from handlers.config import load_config
from handlers.errors import JobError, SetupError
from handlers.storage import StorageHandler
from handlers.storage.settings import StorageSettings
from tests.support.http import closed_port_url

CONFIG = load_config(
    {"BUCKET_ACCESS_KEY_ID": "AKIDEXAMPLE", "BUCKET_SECRET_ACCESS_KEY": "s3cr3t-v4lue"}
)
SEEN: dict[str, Path] = {}
REPO = Path(__file__).resolve().parents[2]


class Echo(Handler):
    name = "echo"

    async def run(self, job: JobContext) -> dict[str, Any]:
        SEEN["workdir"] = job.workdir
        (job.workdir / "scratch").write_text("x")
        if job.input.get("fail") == "job":
            raise JobError("input.fail='job' is refused: a test")
        if job.input.get("fail") == "bug":
            raise KeyError("oops")
        if job.input.get("fail") == "secret":
            raise JobError(f"S3 said the key {CONFIG.bucket.secret_access_key} is wrong")  # type: ignore[union-attr]
        return {"echo": dict(job.input)}


class Buggy(Echo):
    """A handler bug whose message carries the job's temp path, as OSErrors' messages do."""

    name = "buggy"

    async def run(self, job: JobContext) -> dict[str, Any]:
        raise ValueError(f"cannot parse {job.workdir / 'source.bin'}")


class BrokenSetup(Echo):
    name = "broken"

    def setup(self) -> None:
        raise RuntimeError("model file missing: put it at /runpod-volume/models/x")


class Streamer(Echo):
    name = "streamer"
    streaming = True

    async def stream(self, job: JobContext) -> AsyncIterator[dict[str, Any]]:
        for i in range(3):
            yield {"chunk": i}
        if job.input.get("fail"):
            raise JobError("stopped early")


def run(handler: Handler, job: dict[str, Any]) -> Any:
    return asyncio.run(adapt(handler, lambda job, message: None)(job))


def collect(handler: Handler, job: dict[str, Any]) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        return [chunk async for chunk in adapt(handler, lambda job, message: None)(job)]

    return asyncio.run(go())


def test_output_and_temp_dir_removed() -> None:
    assert run(Echo(CONFIG), {"id": "j1", "input": {"a": 1}}) == {"echo": {"a": 1}}
    assert not SEEN["workdir"].exists()


@pytest.mark.parametrize(
    ("job", "error"),
    [
        ({"id": "j", "input": {"fail": "job"}}, "input.fail='job' is refused: a test"),
        (
            {"id": "j", "input": {"fail": "bug"}},
            "the echo handler failed on this job; the worker's log has the details (job j)",
        ),
        ({"id": "j", "input": "text"}, "input must be a JSON object, got str"),
        ({"id": "j"}, "input must be a JSON object, got NoneType"),
    ],
)
def test_every_failure_is_one_error_string(job: dict[str, Any], error: str) -> None:
    result = run(Echo(CONFIG), job)
    assert result == {"error": error}
    assert not SEEN.get("workdir", Path("/nonexistent")).exists()


def test_a_handler_bug_is_one_sentence_and_the_traceback_goes_to_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="runpod-slim"):
        result = run(Buggy(CONFIG), {"id": "job-42", "input": {}})
    assert result == {
        "error": "the buggy handler failed on this job; the worker's log has the details "
        "(job job-42)"
    }
    logged = caplog.text
    assert "Traceback (most recent call last)" in logged and "ValueError: cannot parse" in logged
    assert "job job-42 failed in the buggy handler" in logged
    assert "runpod-slim-job-" not in logged  # the job's temp path is cut from the log too


def test_secrets_never_reach_the_output() -> None:
    result = run(Echo(CONFIG), {"id": "j", "input": {"fail": "secret"}})
    assert result == {"error": "S3 said the key *** is wrong"}


def test_setup_failure_is_reported_on_every_job() -> None:
    handler = BrokenSetup(CONFIG)
    with pytest.raises(RuntimeError):
        handler.setup()
    handler.setup_error = "model file missing: put it at /runpod-volume/models/x"
    for _ in range(2):
        assert run(handler, {"id": "j", "input": {}}) == {
            "error": "broken setup failed: model file missing: put it at /runpod-volume/models/x"
        }


def test_streaming_yields_chunks_then_the_error_shape() -> None:
    assert collect(Streamer(CONFIG), {"id": "j", "input": {}}) == [
        {"chunk": 0},
        {"chunk": 1},
        {"chunk": 2},
    ]
    assert collect(Streamer(CONFIG), {"id": "j", "input": {"fail": True}})[-1] == {
        "error": "stopped early"
    }


def test_registry_imports_every_entry() -> None:
    for name in handlers.registry():
        handler = handlers.load(name)
        assert issubclass(handler, Handler) and handler.name == name


def test_unknown_handler_lists_the_choices() -> None:
    with pytest.raises(handlers.UnknownHandlerError) as info:
        handlers.load("storag")
    assert str(info.value) == (
        "HANDLER_TYPE='storag' names no handler in this build (did you mean 'storage'?); "
        f"choose one of {', '.join(sorted(handlers.registry()))}"
    )


def test_one_shot_mode_drains_streams() -> None:
    assert one_shot({}, ["handler.py", "--test_input", "{}"])
    assert not one_shot({}, ["handler.py", "--rp_serve_api"])
    assert not one_shot({"RUNPOD_WEBHOOK_GET_JOB": "https://api/job"}, ["handler.py"])

    def words(job: dict[str, Any]) -> Iterator[str]:
        yield from job["input"].split()

    assert drained(words)({"input": "a b"}) == ["a", "b"]
    chunks = asyncio.run(
        drained(adapt(Streamer(CONFIG), lambda job, m: None))({"id": "j", "input": {}})
    )
    assert chunks == [{"chunk": 0}, {"chunk": 1}, {"chunk": 2}]
    assert drained(run) is run  # not a stream: unchanged


def worker(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """handler.py as a worker starts it, on an empty cache, with the index unreachable."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_SLIM_")}
    return subprocess.run(
        [sys.executable, str(REPO / "handler.py")],
        cwd=tmp_path,
        env={
            **base,
            "RUNPOD_SLIM_VOLUME": str(tmp_path / "no-volume"),
            "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
            "RUNPOD_SLIM_INDEX_URL": closed_port_url(),
            "RUNPOD_SLIM_GPU": "none",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_bad_handler_setting_stops_the_worker_before_any_install(tmp_path: Path) -> None:
    started = worker(tmp_path, HANDLER_TYPE="tts", RUNPOD_SLIM_TTS_MAX_CHARS="lots")
    assert started.returncode == 1
    assert (
        "the worker cannot start: RUNPOD_SLIM_TTS_MAX_CHARS='lots' is not valid: "
        "a whole number > 0" in started.stderr
    )
    assert "state=starting" not in started.stderr and "Traceback" not in started.stderr
    assert not (tmp_path / "cache").exists()


def test_only_the_chosen_handlers_settings_are_read() -> None:
    """The shared config reads no handler's own settings; each handler's module reads its own."""
    from handlers.tts import settings as tts_settings
    from handlers.video import settings as video_settings

    env = {"RUNPOD_SLIM_TTS_MAX_CHARS": "lots", "RUNPOD_SLIM_VIDEO_MAX_DURATION_S": "-1"}
    assert load_config(env).job_timeout_s == 3600
    with pytest.raises(SettingsError, match="RUNPOD_SLIM_TTS_MAX_CHARS='lots'"):
        tts_settings.load(env)
    with pytest.raises(SettingsError, match="RUNPOD_SLIM_VIDEO_MAX_DURATION_S='-1'"):
        video_settings.load(env)


def test_a_bad_video_setting_stops_a_video_worker_before_install_in_one_line(
    tmp_path: Path,
) -> None:
    started = worker(tmp_path, HANDLER_TYPE="video", RUNPOD_SLIM_VIDEO_MAX_PIXELS="huge")
    assert started.returncode == 1
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert lines[0].endswith(
        "the worker cannot start: RUNPOD_SLIM_VIDEO_MAX_PIXELS='huge' is not valid: "
        "a whole number > 0"
    )
    assert not (tmp_path / "cache").exists()


def test_a_bad_video_setting_does_not_stop_a_storage_worker(tmp_path: Path) -> None:
    env = {"HANDLER_TYPE": "storage", "RUNPOD_SLIM_VIDEO_MAX_PIXELS": "huge"}
    env |= {"RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB": "-1", "RUNPOD_SLIM_VIDEO_MAX_DURATION_S": "x"}
    parsed = read_settings({**env, "RUNPOD_SLIM_VOLUME": str(tmp_path / "none")})
    assert parsed.bootstrap.handler_type == "storage"
    assert parsed.handler == StorageSettings()
    # The worker itself goes on to its install (refused at once here: offline, no cache).
    started = worker(tmp_path, **env, RUNPOD_SLIM_OFFLINE="1")
    assert "state=starting handler=storage" in started.stderr
    assert "VIDEO" not in started.stderr
    with pytest.raises(SettingsError, match="RUNPOD_SLIM_VIDEO_MAX_"):
        read_settings({**env, "HANDLER_TYPE": "video"})


def test_the_handler_gets_the_settings_read_before_the_install(tmp_path: Path) -> None:
    environ = {"HANDLER_TYPE": "storage", "RUNPOD_SLIM_STORAGE_EXPIRES_S": "60"}
    parsed = read_settings({**environ, "RUNPOD_SLIM_VOLUME": str(tmp_path / "none")})
    assert parsed.handler == StorageSettings(expires_s=60)
    assert parsed.config is not None and parsed.config.volume == tmp_path / "none"
    built = build_handler({}, parsed)  # nothing is read from this environment again
    assert isinstance(built, StorageHandler) and built.settings is parsed.handler
    with pytest.raises(SettingsError) as info:
        read_settings({"HANDLER_TYPE": "storage", "RUNPOD_SLIM_STORAGE_EXPIRES_S": "8d"})
    assert str(info.value) == (
        "RUNPOD_SLIM_STORAGE_EXPIRES_S='8d' is not valid: a whole number of seconds from 1 to "
        "604800 (7 days)"
    )


def test_a_custom_worker_reads_no_handler_settings() -> None:
    parsed = read_settings(
        {
            "HANDLER_TYPE": "custom",
            "RUNPOD_SLIM_CUSTOM_HANDLER": "my_worker:handler",
            "RUNPOD_SLIM_VIDEO_MAX_PIXELS": "huge",
        }
    )
    assert (parsed.config, parsed.handler) == (None, None)


def test_the_handlers_errors_share_one_base() -> None:
    from bootstrap.errors import BootstrapError
    from handlers import errors

    for kind in (errors.JobError, errors.SetupError, errors.SettingsError):
        assert issubclass(kind, errors.HandlerError)
    refusal = errors.SettingsError("RUNPOD_SLIM_X", "y", "a whole number")
    assert isinstance(refusal, BootstrapError) and isinstance(refusal, SettingsError)
    assert str(refusal) == "RUNPOD_SLIM_X='y' is not valid: a whole number"


class LateSetup(Echo):
    """A handler that finds, during a job, that a model it needs cannot be set up."""

    name = "late"

    async def run(self, job: JobContext) -> dict[str, Any]:
        raise SetupError("the voice model on the volume is damaged; put it back")


def test_any_handler_error_in_a_job_is_the_callers_one_sentence() -> None:
    result = asyncio.run(adapt(LateSetup(CONFIG), lambda job, message: None)({"input": {}}))
    assert result == {"error": "the voice model on the volume is damaged; put it back"}


def test_nothing_the_image_ships_imports_the_harness() -> None:
    """handlers/harness.py stays out of the image (.dockerignore): no shipped module needs it."""
    import ast

    shipped = [REPO / "handler.py", *REPO.glob("bootstrap/**/*.py"), *REPO.glob("handlers/**/*.py")]
    importers = []
    for path in shipped:
        if path.name == "harness.py" or "__pycache__" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):  # also `from . import harness`
                names = [node.module or "", *(alias.name for alias in node.names)]
            else:
                continue
            if any(name.split(".")[-1] == "harness" for name in names):
                importers.append(path.relative_to(REPO))
    assert importers == []
    rules = (REPO / ".dockerignore").read_text().splitlines()
    assert "handlers/harness.py" in rules
    assert rules.index("handlers/harness.py") > rules.index("!handlers/")  # the later rule wins


class Verbose(Echo):
    """Answers with a whole output of `input.mb` megabytes of JSON; streams it when asked."""

    name = "verbose"

    async def run(self, job: JobContext) -> dict[str, Any]:
        return {"words": ["w" * 99] * int(job.input["mb"] * 10_000)}


class BigStreamer(Streamer):
    name = "big-streamer"

    async def stream(self, job: JobContext) -> AsyncIterator[dict[str, Any]]:
        yield {"chunk": 0, "data": "x" * 100}
        yield {"chunk": 1, "data": "x" * 1_100_000}
        yield {"chunk": 2}


def test_the_worker_puts_a_whole_output_over_10_mb_on_the_volume(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    config = load_config({"RUNPOD_SLIM_VOLUME": str(volume)})
    small = run(Verbose(config), {"id": "small", "input": {"mb": 1}})
    assert small == {"words": ["w" * 99] * 10_000}
    big = run(Verbose(config), {"id": "big", "input": {"mb": 12}})
    landed = volume / "runpod-slim-outputs" / "big" / "output.json"
    assert big["destination"] == "volume://runpod-slim-outputs/big/output.json"
    assert big["offloaded"].startswith("the job's output is 12.")
    assert len(landed.read_bytes()) == big["bytes"] > 12_000_000


def test_the_worker_refuses_a_streamed_chunk_over_1_mb_and_stops_the_stream() -> None:
    chunks = collect(BigStreamer(CONFIG), {"id": "s", "input": {}})
    assert chunks[0] == {"chunk": 0, "data": "x" * 100}
    assert chunks[1:] == [
        {
            "error": "a streamed chunk is 1.10 MB as JSON, over the 1 MB RunPod takes per "
            "streamed chunk"
        }
    ]
