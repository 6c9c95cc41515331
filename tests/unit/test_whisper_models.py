"""Where a Whisper model name leads (handlers.whisper_models.WhisperModels.resolve)."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.config import load_config
from handlers.errors import JobError
from handlers.whisper_models import WhisperModels


def models(volume: Path, tmp_path: Path) -> WhisperModels:
    config = load_config(
        {"RUNPOD_SLIM_VOLUME": str(volume), "RUNPOD_SLIM_CACHE": str(tmp_path / "cache")}
    )
    return WhisperModels(config, lambda: "cpu")


def test_a_directory_the_user_put_on_the_volume_comes_first(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    placed = volume / "models" / "whisper" / "base"
    placed.mkdir(parents=True)
    found = models(volume, tmp_path)
    # No model.bin yet: the name is downloaded into the volume's model cache.
    assert found.resolve("base", "input.model") == (
        "base",
        str(volume / ".runpod-slim" / "models" / "whisper"),
    )
    (placed / "model.bin").write_bytes(b"weights")
    assert found.resolve("base", "input.model") == (str(placed.resolve()), None)
    assert found.resolve("volume://models/whisper/base", "input.model") == (
        str(placed.resolve()),
        None,
    )


def test_without_a_volume_a_name_downloads_to_the_default_cache(tmp_path: Path) -> None:
    assert models(tmp_path / "absent", tmp_path).resolve("turbo", "input.model") == (
        "turbo",
        None,
    )


def test_an_unknown_name_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"^input.model='larg-v3' is not allowed: choose one of "):
        models(tmp_path, tmp_path).resolve("larg-v3", "input.model")
