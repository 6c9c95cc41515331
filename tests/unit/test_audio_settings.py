"""The audio worker's own settings (handlers.audio.settings), from a mapping passed in."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.errors import SettingsError
from handlers.audio.settings import AudioSettings, load


def test_defaults() -> None:
    assert load({}) == AudioSettings("large-v3", 2, 4 * 3600, None)


def test_values_are_read_and_trimmed() -> None:
    settings = load(
        {
            "RUNPOD_SLIM_AUDIO_MODEL": " volume://models/whisper/tiny.en ",
            "RUNPOD_SLIM_AUDIO_MAX_MODELS": "3",
            "RUNPOD_SLIM_AUDIO_MAX_DURATION_S": "60",
            "HF_TOKEN": " hf_secret ",
        }
    )
    assert settings == AudioSettings("volume://models/whisper/tiny.en", 3, 60, "hf_secret")
    assert "hf_secret" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("RUNPOD_SLIM_AUDIO_MAX_DURATION_S", "4h", "'4h'"),
        ("RUNPOD_SLIM_AUDIO_MAX_MODELS", "0", "'0'"),
        ("RUNPOD_SLIM_AUDIO_MAX_MODELS", "-1", "'-1'"),
        ("RUNPOD_SLIM_AUDIO_MAX_MODELS", "x" * 500, repr("x" * 57 + "...")),
    ],
)
def test_a_bad_count_names_the_variable_and_what_is_allowed(
    name: str, value: str, shown: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load({name: value})
    assert str(info.value) == f"{name}={shown} is not valid: a whole number > 0"


def test_only_an_audio_worker_reads_them(tmp_path: Path) -> None:
    from handler import read_settings

    base = {"RUNPOD_SLIM_VOLUME": str(tmp_path), "RUNPOD_SLIM_CACHE": str(tmp_path / "cache")}
    bad = {**base, "RUNPOD_SLIM_AUDIO_MAX_DURATION_S": "4h"}
    assert read_settings({**bad, "HANDLER_TYPE": "storage"}).bootstrap.handler_type == "storage"
    with pytest.raises(SettingsError, match=r"^RUNPOD_SLIM_AUDIO_MAX_DURATION_S='4h' is not"):
        read_settings({**bad, "HANDLER_TYPE": "audio"})
    good = {**base, "HANDLER_TYPE": "audio", "RUNPOD_SLIM_AUDIO_MAX_DURATION_S": "60"}
    assert read_settings(good).handler == AudioSettings(max_duration_s=60)
