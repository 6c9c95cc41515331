"""The real cu126 torch stack (about 2.9 GB), installed by the bootstrap and used on CPU.

This is the audio handler's env: torch 2.7.0, torchaudio 2.7.0, the CUDA 12.6 wheels and
whisperx, from the hashed lock, exactly as a GPU worker's first start installs it. No GPU
here, so flash-attn is left out (and the plan says why) and torch runs on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

PROBE = """
import json, torch, torchaudio
x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
wave = torch.sin(torch.linspace(0, 100, 16000)).unsqueeze(0)
resampled = torchaudio.functional.resample(wave, 16000, 8000)
print(json.dumps({
    "torch": torch.__version__, "cuda": torch.version.cuda,
    "cxx11abi": torch._C._GLIBCXX_USE_CXX11_ABI, "torchaudio": torchaudio.__version__,
    "cuda_available": torch.cuda.is_available(), "matmul": (x @ x.T).trace().item(),
    "resampled": list(resampled.shape), "torch_file": torch.__file__,
}))
"""


def test_audio_stack_installs_and_runs_on_cpu(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_SLIM_")},
        "HANDLER_TYPE": "audio",
        "RUNPOD_SLIM_CACHE": str(cache),
        "RUNPOD_SLIM_VOLUME": str(tmp_path / "no-volume"),
        "PYTHONPATH": str(REPO),
    }
    install = subprocess.run(
        [sys.executable, "-m", "bootstrap", "install", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-5000:]
    result = json.loads(install.stdout)
    assert result["cold"] is True and result["key"].startswith("audio-cu126-")
    assert "plan: without flash-attn: no GPU" in install.stderr
    manifest = json.loads((Path(result["env"]) / "manifest.json").read_text())
    assert "torch==2.7.0" in manifest["requirements"]
    assert "nvidia-cudnn-cu12==9.5.1.17" in manifest["requirements"]
    assert manifest["flash_attn"] is None
    assert manifest["size_bytes"] > 4e9  # the CUDA 12.6 libraries are really there

    probe = subprocess.run(
        [sys.executable, "-s", "-c", PROBE],
        env={**os.environ, "PYTHONPATH": result["site"]},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    facts = json.loads(probe.stdout.strip().splitlines()[-1])
    assert facts["torch"] == "2.7.0+cu126" and facts["cuda"] == "12.6"
    assert facts["cxx11abi"] is True and facts["torchaudio"].startswith("2.7.0")
    assert facts["cuda_available"] is False
    assert facts["matmul"] == 506.0 and facts["resampled"] == [1, 8000]
    assert facts["torch_file"].startswith(result["site"])

    warm = subprocess.run(
        [sys.executable, "-m", "bootstrap", "install", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads(warm.stdout)["cold"] is False
