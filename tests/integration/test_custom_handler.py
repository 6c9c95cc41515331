"""HANDLER_TYPE=custom: a user's unchanged RunPod function, its requirements in a cached env.

The worker runs as users run it, `python3 handler.py --test_input`, with the user's module and
an unhashed requirements.txt in a directory of their own. The bootstrap resolves those
requirements once (adding runpod), records what it resolved, and serves the function as is.
"""

from __future__ import annotations

import ast
import json
import os
import re
import socket
from pathlib import Path

import pytest

from handlers.harness import local_api, run_one_job
from tests.support.builders import build_wheel

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


# --- the user's requirements are smoke-tested by their import names before publishing -------

NAMES_MODULE = """
import yaml
from PIL import Image


def handler(job):
    size = Image.new("RGB", (3, 2)).size
    return yaml.safe_load(job["input"]["yaml"]) | {"size": list(size)}
"""


def test_requirements_whose_import_names_differ_are_smoke_tested(tmp_path: Path) -> None:
    # pyyaml imports as yaml, pillow as PIL: the names come from the installed metadata.
    user_dir = tmp_path / "my-worker"
    user_dir.mkdir()
    (user_dir / "names_worker.py").write_text(NAMES_MODULE)
    (user_dir / "requirements.txt").write_text("PyYAML==6.0.3\npillow\n")
    result, log = run_worker(user_dir, "names_worker:handler", {"yaml": "a: 1"})
    assert result == {"output": {"a": 1, "size": [3, 2]}}
    assert "smoke: imported runpod; your requirements' modules yaml (pyyaml), PIL (pillow)" in log
    # Two requirements, and everything they and runpod pull in: the count is what landed.
    installed = re.search(r"download and install: (\d+) packages", log)
    assert installed is not None and int(installed[1]) > 50, log[-2000:]


def broken_wheel(directory: Path) -> Path:
    """A real wheel whose package raises at import, as one missing a system library does."""
    directory.mkdir()
    return build_wheel(
        directory,
        "brokenpkg-1.0-py3-none-any.whl",
        {
            "broken_mod/__init__.py": (
                "raise RuntimeError('needs libfoo.so.1, which this image does not have')\n"
            )
        },
    )


def test_a_requirement_that_fails_at_import_is_never_published(tmp_path: Path) -> None:
    user_dir = tmp_path / "my-worker"
    user_dir.mkdir()
    (user_dir / "my_worker.py").write_text(USER_MODULE)
    (user_dir / "requirements.txt").write_text("six==1.17.0\nbrokenpkg==1.0\n")
    wheels = broken_wheel(tmp_path / "wheels").parent
    env = {**worker_env(user_dir, "my_worker:handler"), "RUNPOD_SLIM_FIND_LINKS": str(wheels)}
    code, log = run_one_job(env, {"text": "hi"})
    assert code == 1, log[-4000:]
    assert (
        "the worker cannot start: your requirement brokenpkg does not import (import "
        "broken_mod: RuntimeError: needs libfoo.so.1, which this image does not have); the env "
        "was not published. Fix it in requirements.txt" in log
    )
    assert "state=failed" in log and "Job result" not in log
    cache = tmp_path / "cache"
    assert list((cache / "envs").glob("custom-*")) == []  # nothing published
    assert list((cache / "staging").iterdir()) == []  # and nothing half-installed left


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_pins_that_conflict_with_the_gpu_stack_are_refused_before_any_download(
    tmp_path: Path,
) -> None:
    user_dir = tmp_path / "my-worker"
    user_dir.mkdir()
    (user_dir / "my_worker.py").write_text(USER_MODULE)
    (user_dir / "requirements.txt").write_text(
        "torch==2.6.0\ntorchvision==0.21.0\nflash-attn==2.7.4.post1\nsix\n"
    )
    # Every place a start could download from is a closed loopback port: reaching any of them
    # would fail with a connection error instead of the conflict.
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {
        **worker_env(user_dir, "my_worker:handler"),
        "RUNPOD_SLIM_CUSTOM_GPU_STACK": "1",
        "RUNPOD_SLIM_GPU": "NVIDIA A100-SXM4-80GB:8.0:550.54.15",  # so flash-attn is planned
        "RUNPOD_SLIM_INDEX_URL": f"{dead}/simple",
        "RUNPOD_SLIM_TORCH_INDEX_URL": f"{dead}/whl",
        "RUNPOD_SLIM_FLASH_ATTN_MIRROR": f"{dead}/releases",
        "RUNPOD_SLIM_WHEELHOUSE": str(tmp_path / "no-wheelhouse"),
        "PATH": "/usr/bin:/bin",  # no uv on PATH: fetching it would be a download too
    }
    code, log = run_one_job(env, {"text": "hi"})
    assert code == 1, log[-4000:]
    assert (
        f"the worker cannot start: {user_dir / 'requirements.txt'} pins torch==2.6.0, "
        f"torchvision==0.21.0 and flash-attn==2.7.4.post1, but RUNPOD_SLIM_CUSTOM_GPU_STACK=1 "
        f"installs torch==2.7.0, torchvision==0.22.0 and flash-attn==2.8.0.post2 (the cu126 "
        f"build of the GPU stack); nothing was downloaded. Remove those pins or change them to "
        f"the stack's versions, or set RUNPOD_SLIM_CUSTOM_STACK_PINS=user" in log
    )
    assert "state=installing" not in log and "Connection refused" not in log
    cache = tmp_path / "cache"
    assert not (cache / "uv-cache").exists() and not (cache / "wheels").exists()
    assert not (cache / "staging").exists() or list((cache / "staging").iterdir()) == []
