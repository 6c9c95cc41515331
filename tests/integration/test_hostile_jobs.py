"""Hostile inputs through the SDK's local API (`handler.py --rp_serve_api`), every handler.

tests/support/hostile.py makes a seeded sample of hostile jobs from each handler's own field
tables. For each handler's worker: every answer is an output or a clean one-sentence error;
the worker serves a good job after; nothing changes outside the volume (the env cache and
the worker's own temporary directory included: job temp dirs are gone when jobs end); no canary
or worker secret appears in any answer, in the worker's log, or in a file on the volume.
"""

from __future__ import annotations

import json
import os
import stat
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from handlers.harness import LocalApi, local_api
from tests.support.hostile import CANARY, Case, cases, check_answer
from tests.support.radosgw import RadosGateway

pytest_plugins = ["tests.support.s3_fixture"]

PER_HANDLER = 300


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    found = {}
    for folder, dirs, files in os.walk(root):
        if skip is not None and Path(folder) == skip:
            dirs[:] = []
            continue
        for name in dirs + files:
            path = os.path.join(folder, name)
            if skip is not None and Path(path) == skip:
                continue
            info = os.lstat(path)
            # A folder's own time changes as job dirs come and go in it: its presence counts.
            is_dir = stat.S_ISDIR(info.st_mode)
            found[path] = (0, 0) if is_dir else (info.st_size, info.st_mtime_ns)
    return found


def ask(api: LocalApi, case: Case) -> dict[str, Any]:
    try:
        return api.post("/runsync", {"input": case.input}, timeout_s=120)
    except urllib.error.HTTPError as exc:
        return {"status": f"HTTP {exc.code}", "error": exc.read().decode(errors="replace")}


def run_suite(
    env: Mapping[str, str],
    base: Path,
    all_cases: list[Case],
    good: Mapping[str, Any],
    secrets: tuple[str, ...],
) -> None:
    volume = Path(env["RUNPOD_SLIM_VOLUME"])
    with local_api(env) as api:
        assert api.runsync(good)["status"] == "COMPLETED"
        outside = snapshot(base, skip=volume)
        problems = []
        for case in all_cases:
            answer = ask(api, case)
            problem = check_answer(answer)
            if problem is None and any(s in json.dumps(answer) for s in secrets):
                problem = "a worker secret came back"
            if problem:
                problems.append(f"{case.label}: {problem}")
        after = api.runsync(good)
        log = api.log()
    assert problems == [], "\n".join(problems[:40])
    assert after["status"] == "COMPLETED", after
    # The cache, and the worker's own TMPDIR: no job temp dir or copy left behind, and the
    # worker's folder of job folders (handlers/workdirs.py) gone with it.
    assert snapshot(base, skip=volume) == {
        path: info for path, info in outside.items() if "/runpod-slim-jobs-" not in path
    }
    for secret in (CANARY, *secrets):
        assert secret not in log
    for path in volume.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert CANARY.encode() not in path.read_bytes(), path


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    (base / "volume").mkdir()
    (base / "tmp").mkdir()
    return base


def worker_env(base: Path, handler: str, **extra: str) -> dict[str, str]:
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RUNPOD_SLIM_", "BUCKET_")) and k != "HF_TOKEN"
        },
        "HANDLER_TYPE": handler,
        "RUNPOD_SLIM_VOLUME": str(base / "volume"),
        "RUNPOD_SLIM_CACHE": str(base / "cache"),
        "RUNPOD_SLIM_JOB_TIMEOUT_S": "60",
        # Its own temp dir (the machine's is shared with other test runs): checked as well.
        "TMPDIR": str(base / "tmp"),
        **extra,
    }


def test_storage_worker_takes_hostile_jobs(
    base_dir: Path, s3_server: RadosGateway, s3_bucket: str
) -> None:
    from handlers.storage import FIELDS

    bases = {
        "copy": {
            "action": "copy",
            "source_base64": "aGVsbG8=",
            "destination": "volume://hostile/out.txt",
        },
        "presign": {"action": "presign", "source": f"s3://{s3_bucket}/k"},
        "list": {"action": "list", "source": "volume://hostile"},
        "stat": {"action": "stat", "source": "volume://hostile/out.txt"},
        "delete": {"action": "delete", "source": "volume://hostile/gone.txt"},
        "cache": {"action": "cache"},
    }
    env = worker_env(
        base_dir,
        "storage",
        BUCKET_ENDPOINT_URL=s3_server.endpoint_url,
        BUCKET_ACCESS_KEY_ID=s3_server.access_key,
        BUCKET_SECRET_ACCESS_KEY=s3_server.secret_key,
    )
    good = {"action": "copy", "source_base64": "aGVsbG8=", "destination": f"s3://{s3_bucket}/g"}
    all_cases = cases(FIELDS, bases, seed=11, count=PER_HANDLER)
    run_suite(env, base_dir, all_cases, good, (s3_server.secret_key,))


def test_video_worker_takes_hostile_jobs(base_dir: Path) -> None:
    from handlers.video import EXAMPLE_CLIP, FIELDS

    bases = {
        action: {"action": action, "video_base64": EXAMPLE_CLIP, "end_s": 0.5}
        if action == "trim"
        else {"action": action, "video_base64": EXAMPLE_CLIP}
        for action in FIELDS
    }
    for action in ("transcode", "trim"):
        bases[action] = {**bases[action], "preset": "ultrafast"}
    good = {"action": "probe", "video_base64": EXAMPLE_CLIP}
    all_cases = cases(FIELDS, bases, seed=12, count=PER_HANDLER)
    run_suite(worker_env(base_dir, "video"), base_dir, all_cases, good, ())


def test_tts_worker_takes_hostile_jobs(base_dir: Path) -> None:
    from handlers.config import load_config
    from handlers.tts import TTSHandler

    fields = {"": TTSHandler(load_config({"RUNPOD_SLIM_VOLUME": "/nonexistent"})).fields}
    bases = {"": {"text": "Hi."}}
    good = {"text": "Hello."}
    all_cases = cases(fields, bases, seed=13, count=PER_HANDLER // 2, action_field=None)
    # Short limits: a hostile text that passes the checks is spoken, and must not take long.
    env = worker_env(
        base_dir, "tts", RUNPOD_SLIM_TTS_MAX_CHARS="300", RUNPOD_SLIM_JOB_TIMEOUT_S="20"
    )
    run_suite(env, base_dir, all_cases, good, ())
