"""bench/gpu_check.py on a machine without a GPU: every check reports, none fails hard.

Its GPU paths run only on a lent GPU machine; here the command must still run to the end and
say, for each check, why it was skipped (no NVML, no CUDA, no ffmpeg with NVENC), while the
checks that need no GPU (the bootstrap's plans) pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"
CHECKS = ["nvml", "plans", "cuda", "attention", "nvenc", "kokoro", "qwen"]


def run(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    out = tmp_path / "report.json"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_SLIM_")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    return report, proc.stderr


def test_without_a_gpu_every_check_reports_and_the_plans_pass(tmp_path: Path) -> None:
    report, _ = run(tmp_path)
    checks = report["checks"]
    assert list(checks) == CHECKS
    assert {check["status"] for check in checks.values()} <= {"ok", "skipped"}
    assert checks["nvml"]["status"] == "skipped"
    assert checks["nvml"]["detail"].startswith("no GPU seen: NVML")
    plans = checks["plans"]
    assert plans["status"] == "ok", plans
    assert set(plans["plans"]) == {"audio", "tts (kokoro, qwen)", "video"}
    tts = plans["plans"]["tts (kokoro, qwen)"]
    assert tts["env_key"].startswith("tts-cu126-") and tts["gpu_present"] is False
    assert tts["flash_attn"] is None and tts["skipped"][0]["package"] == "flash-attn"
    assert plans["plans"]["video"]["env_key"].startswith("video-none-")
    for name in ("cuda", "attention", "kokoro", "qwen"):
        assert checks[name]["status"] == "skipped", name
        detail = checks[name]["detail"]
        assert detail.startswith("torch cannot be imported here") or detail.endswith(
            "sees no CUDA device"
        ), detail
    assert checks["nvenc"]["status"] == "skipped"
    assert checks["nvenc"]["detail"].startswith(("no ffmpeg here", "no GPU here"))
    assert report["summary"] == {"ok": 1, "skipped": 6, "failed": 0}


def test_a_spent_budget_skips_what_is_left(tmp_path: Path) -> None:
    report, _ = run(tmp_path, "--budget-s", "0", "--only", "cuda", "--only", "nvml")
    assert report["checks"] == {
        "cuda": {"status": "skipped", "detail": "the budget was spent"},
        "nvml": {"status": "skipped", "detail": "the budget was spent"},
    }


def test_a_check_that_raises_is_reported_as_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "bench"))

    def broken() -> dict[str, Any]:
        raise RuntimeError("the matmul differs\nsecond line")

    monkeypatch.setitem(gpu_check.CHECKS, "cuda", broken)
    result = gpu_check.run_one("cuda")
    assert (result["status"], result["detail"]) == ("failed", "the matmul differs")
