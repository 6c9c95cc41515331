"""python3 -m bootstrap: detect, plan, doctor and prune, through main() with a dict environ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bootstrap.__main__ import main
from bootstrap.cache import Layout, new_staging, publish, write_manifest


def env_for(tmp_path: Path) -> dict[str, str]:
    return {
        "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
        "RUNPOD_SLIM_VOLUME": str(tmp_path / "no-volume"),
        "HOME": str(tmp_path),
    }


def test_detect_json_without_a_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--json"], env_for(tmp_path)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["present"] is False and data["count"] == 0 and data["reason"]


def test_plan_for_a_gpu_spec_and_another_python(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "plan",
        "--handler",
        "audio",
        "--gpu",
        "NVIDIA H100 80GB HBM3:9.0:550.54.15",
        "--python",
        "3.10",
        "--json",
    ]
    assert main(argv, env_for(tmp_path)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["handler"] == "audio" and data["variant"] == "cu126" and data["python"] == "3.10"
    assert data["env_key"].startswith("audio-cu126-cp310-")
    assert (
        "torch==2.7.0" in data["requirements"] and "flash-attn==2.8.0.post2" in data["requirements"]
    )
    assert data["flash_attn"]["wheel"].endswith("-cp310-cp310-linux_x86_64.whl")
    assert data["skipped"] == []


@pytest.mark.parametrize(
    ("engine", "key", "torch"),
    [("piper", "tts-piper-none-cp311-", False), ("qwen", "tts-cu126-", True)],
)
def test_plan_for_tts_follows_its_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str, key: str, torch: bool
) -> None:
    env = {**env_for(tmp_path), "RUNPOD_SLIM_TTS_ENGINE": engine}
    argv = ["plan", "--handler", "tts", "--gpu", "NVIDIA A100 80GB:8.0:550.54.15", "--json"]
    assert main([*argv, "--python", "3.11"], env) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["env_key"].startswith(key)
    assert data["lock"]["file"] == ("tts-cu126-cp311.txt" if torch else "tts-piper-none-cp311.txt")
    assert ("torch==2.7.0" in data["requirements"]) is torch
    assert (data["flash_attn"] is not None) is torch


def test_plan_refusal_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", "--handler", "audio", "--gpu", "NVIDIA B200:10.0:550.54.15"]
    assert main(argv, env_for(tmp_path)) == 1
    assert "too old for the cu128 build" in capsys.readouterr().err


def test_bad_setting_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect"], {**env_for(tmp_path), "RUNPOD_SLIM_FLASH_ATTN": "maybe"}) == 2
    assert "RUNPOD_SLIM_FLASH_ATTN='maybe' is not valid" in capsys.readouterr().err


def test_doctor_and_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = Layout(tmp_path / "cache")
    layout.prepare()
    for key, when in (("old", 1.0), ("new", 2.0)):
        staging = new_staging(layout, key)
        write_manifest(staging, {"key": key, "published_at": when, "size_bytes": 10})
        publish(staging, layout.env_dir(key))
    assert main(["doctor", "--json", "--handler", "storage"], env_for(tmp_path)) == 0
    report = json.loads(capsys.readouterr().out)
    assert [e["key"] for e in report["envs"]] == ["new", "old"]
    assert report["variant"] == "none" and report["start_would"].startswith("install ")
    assert main(["prune", "--keep", "1", "--dry-run"], env_for(tmp_path)) == 0
    assert capsys.readouterr().out.strip() == "would remove: old"
    assert main(["prune", "--keep", "1"], env_for(tmp_path)) == 0
    assert capsys.readouterr().out.strip() == "removed: old"
    assert not layout.env_dir("old").exists() and layout.env_dir("new").exists()
