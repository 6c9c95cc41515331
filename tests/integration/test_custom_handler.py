"""HANDLER_TYPE=custom: a user's unchanged RunPod function, its requirements in a cached env.

The worker runs as users run it, `python3 handler.py --test_input`, with the user's module and
an unhashed requirements.txt in a directory of their own. The bootstrap resolves those
requirements once (adding runpod), records what it resolved, and serves the function as is.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from handlers.harness import local_api, run_one_job

REPO = Path(__file__).resolve().parents[2]

USER_MODULE = """
import six  # from the user's requirements, not from the worker's image


def handler(job):
    return {"upper": job["input"]["text"].upper(), "six": six.__version__}


async def async_handler(job):
    return {"id_seen": job["id"]}


def generator_handler(job):
    for word in job["input"]["text"].split():
        yield {"word": word}
"""


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("my-worker")
    (directory / "my_worker.py").write_text(USER_MODULE)
    (directory / "requirements.txt").write_text("six==1.17.0\n")
    return directory


def worker_env(user_dir: Path, target: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_SLIM_")},
        "HANDLER_TYPE": "custom",
        "RUNPOD_SLIM_CUSTOM_HANDLER": target,
        "RUNPOD_SLIM_CUSTOM_DIR": str(user_dir),
        "RUNPOD_SLIM_CACHE": str(user_dir.parent / "cache"),
        "RUNPOD_SLIM_VOLUME": str(user_dir.parent / "no-volume"),
    }


def run_worker(
    user_dir: Path, target: str, job_input: dict[str, object]
) -> tuple[dict[str, object], str]:
    code, log = run_one_job(worker_env(user_dir, target), job_input)
    assert code == 0, log[-4000:]
    results = [
        line.split("Job result: ", 1)[1] for line in log.splitlines() if "Job result: " in line
    ]
    assert results, log[-4000:]
    result: dict[str, object] = ast.literal_eval(results[-1])
    return result, log


def test_sync_function_is_served_unchanged_with_its_requirements(user_dir: Path) -> None:
    result, log = run_worker(user_dir, "my_worker:handler", {"text": "hello"})
    assert result == {"output": {"upper": "HELLO", "six": "1.17.0"}}
    assert "state=ready custom handler my_worker:handler, a function" in log
    [manifest_path] = (user_dir.parent / "cache" / "envs").glob("custom-none-*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert "six==1.17.0" in manifest["resolved"]
    assert any(r.startswith("runpod==") for r in manifest["resolved"])  # added for the user


def test_async_function(user_dir: Path) -> None:
    result, log = run_worker(user_dir, "my_worker:async_handler", {})
    assert result == {"output": {"id_seen": "local_test"}}
    assert "lookup: warm" in log  # same requirements: the env from the first test


def test_generator_function_runs_under_test_input_too(user_dir: Path) -> None:
    # The SDK's one-job mode would return the generator unrun; the worker drains it.
    result, _ = run_worker(user_dir, "my_worker:generator_handler", {"text": "a b"})
    assert result == {"output": [{"word": "a"}, {"word": "b"}]}


def test_generator_function_streams_through_the_local_api(user_dir: Path) -> None:
    # The SDK's --test_input mode does not iterate generators; its API server does.
    env = worker_env(user_dir, "my_worker:generator_handler")
    with local_api(env) as api:
        result = api.runsync({"text": "a b c"})
    assert result["status"] == "COMPLETED"
    assert result["output"] == [{"word": "a"}, {"word": "b"}, {"word": "c"}]


def test_a_function_that_cannot_load_is_reported_on_the_job(user_dir: Path) -> None:
    code, log = run_one_job(worker_env(user_dir, "my_worker:no_such_function"), {})
    assert code == 1  # the SDK's local mode exits 1 when the job reports an error
    assert (
        "Job local_test failed with error: custom handler my_worker:no_such_function could not "
        "be loaded from" in log
    )
    assert "AttributeError: module 'my_worker' has no attribute 'no_such_function'" in log
