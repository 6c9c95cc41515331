"""Where a Whisper model name leads (handlers.audio.whisper_models.resolve)."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.audio.whisper_models import ModelSource, resolve
from handlers.config import HandlerConfig, load_config
from handlers.errors import JobError


def config(volume: Path, tmp_path: Path) -> HandlerConfig:
    return load_config(
        {"RUNPOD_SLIM_VOLUME": str(volume), "RUNPOD_SLIM_CACHE": str(tmp_path / "cache")}
    )


def test_a_directory_the_user_put_on_the_volume_comes_first(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    placed = volume / "models" / "whisper" / "base"
    placed.mkdir(parents=True)
    found = config(volume, tmp_path)
    # No model.bin yet: the name is downloaded into the volume's model cache.
    download = resolve("base", "input.model", found)
    assert download == ModelSource(
        "base", "base", str(volume / ".runpod-slim" / "models" / "whisper")
    )
    assert not download.is_directory
    (placed / "model.bin").write_bytes(b"weights")
    assert resolve("base", "input.model", found) == ModelSource("base", str(placed.resolve()), None)
    named = resolve("volume://models/whisper/base", "input.model", found)
    assert (named.target, named.download_root, named.is_directory) == (
        str(placed.resolve()),
        None,
        True,
    )


def test_without_a_volume_a_name_downloads_to_the_default_cache(tmp_path: Path) -> None:
    assert resolve("turbo", "input.model", config(tmp_path / "absent", tmp_path)) == ModelSource(
        "turbo", "turbo", None
    )


def test_an_unknown_name_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"^input.model='larg-v3' is not allowed: choose one of "):
        resolve("larg-v3", "input.model", config(tmp_path, tmp_path))


def test_a_volume_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models" / "whisper" / "empty").mkdir(parents=True)
    with pytest.raises(JobError) as info:
        resolve("volume://models/whisper/empty", "input.model", config(tmp_path, tmp_path))
    assert str(info.value).startswith(
        "input.model='volume://models/whisper/empty': no CTranslate2 model directory at "
    )
