"""HANDLER_TYPE=custom with RUNPOD_SLIM_CUSTOM_GPU_STACK=1: a vision function moves over.

The user's function imports torchvision and runs `torchvision.ops.nms`, as detection models'
post-processing does. Its requirements name torch and torchvision as a fat image's would; the
stack's pins replace them (torch 2.7.0 cu126, torchvision 0.22.0, the CUDA 12.6 wheels, from
the hashed stack lock). The real stack (about 3 GB) is installed once for this module, by the
bootstrap as a worker's first start does it, then served warm through `--test_input` and the
local API. No GPU here: torch and torchvision run on the CPU.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.harness import local_api, run_one_job

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # the cu126 torch stack (about 3 GB), installed once

VISION_MODULE = """
import torch
import torchvision
from PIL import Image


def detect(job):
    boxes = torch.tensor(job["input"]["boxes"], dtype=torch.float32)
    scores = torch.tensor(job["input"]["scores"], dtype=torch.float32)
    keep = torchvision.ops.nms(boxes, scores, job["input"].get("iou", 0.5))
    return {
        "keep": keep.tolist(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(boxes.device),
        "pil": Image.new("RGB", (4, 2)).size,
    }
"""
# As a fat image's requirements.txt reads: torch and torchvision pinned loosely, pillow.
REQUIREMENTS = "torch==2.7.0\ntorchvision>=0.20\npillow\n"
JOB = {
    "boxes": [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]],
    "scores": [0.9, 0.8, 0.7],
}


@pytest.fixture(scope="module")
def vision_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The worker's environment; the custom env installed (cold) into its cache once."""
    base = tmp_path_factory.mktemp("vision")
    user_dir = base / "my-vision-worker"
    user_dir.mkdir()
    (user_dir / "vision_worker.py").write_text(VISION_MODULE)
    (user_dir / "requirements.txt").write_text(REQUIREMENTS)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_SLIM_")},
        "HANDLER_TYPE": "custom",
        "RUNPOD_SLIM_CUSTOM_HANDLER": "vision_worker:detect",
        "RUNPOD_SLIM_CUSTOM_DIR": str(user_dir),
        "RUNPOD_SLIM_CUSTOM_GPU_STACK": "1",
        "RUNPOD_SLIM_CACHE": str(base / "cache"),
        "RUNPOD_SLIM_VOLUME": str(base / "no-volume"),
    }
    try:
        install = subprocess.run(
            [sys.executable, "-m", "bootstrap", "install", "--json"],
            cwd=REPO,
            env={**env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert install.returncode == 0, install.stderr[-5000:]
        result = json.loads(install.stdout)
        assert result["cold"] is True and result["key"].startswith("custom-cu126-")
        log = install.stderr
        assert "smoke: imported runpod, torch, torchaudio, torchvision" in log
        assert (
            "smoke: imported runpod, torch, torchaudio, torchvision; your requirements' modules "
            "PIL (pillow), ran torchvision.ops.nms"
        ) in log
        manifest = json.loads((Path(result["env"]) / "manifest.json").read_text())
        resolved = set(manifest["resolved"])
        assert {"torch==2.7.0", "torchaudio==2.7.0", "torchvision==0.22.0"} <= resolved
        assert {"triton==3.3.0", "nvidia-cudnn-cu12==9.5.1.17"} <= resolved
        assert any(name.startswith("pillow==") for name in resolved)
        yield env
    finally:
        shutil.rmtree(base, ignore_errors=True)  # about 5 GB: not left for pytest's retention


def job_result(log: str) -> dict[str, object]:
    results = [
        line.split("Job result: ", 1)[1] for line in log.splitlines() if "Job result: " in line
    ]
    assert results, log[-4000:]
    result: dict[str, object] = ast.literal_eval(results[-1])
    return result


def check_output(output: object) -> None:
    assert isinstance(output, dict), output
    assert output["keep"] == [0, 2]  # the second box overlaps the first (IoU 0.68)
    assert output["torch"] == "2.7.0+cu126"
    assert str(output["torchvision"]).startswith("0.22.0")
    assert output["device"] == "cpu"
    assert list(output["pil"]) == [4, 2]


def test_vision_function_runs_nms_through_test_input(vision_env: dict[str, str]) -> None:
    code, log = run_one_job(vision_env, JOB)
    assert code == 0, log[-4000:]
    assert "lookup: warm" in log
    assert "state=ready custom handler vision_worker:detect, a function" in log
    check_output(job_result(log)["output"])


def test_vision_function_runs_nms_through_the_local_api(vision_env: dict[str, str]) -> None:
    with local_api(vision_env) as api:
        result = api.runsync(JOB)
    assert result["status"] == "COMPLETED", result
    check_output(result["output"])
