"""The video handler's own settings, from an environment mapping passed in."""

from __future__ import annotations

import pytest

from bootstrap.errors import SettingsError
from handlers.config import load_config
from handlers.video import VideoHandler
from handlers.video.settings import VideoSettings, load


def test_defaults_and_values() -> None:
    assert load({}) == VideoSettings(3600, 3840 * 2160, 8_000_000_000)
    assert load(
        {
            "RUNPOD_SLIM_VIDEO_MAX_DURATION_S": " 60 ",
            "RUNPOD_SLIM_VIDEO_MAX_PIXELS": "921600",
            "RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB": "0.5",
        }
    ) == VideoSettings(60, 921_600, 500_000)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "RUNPOD_SLIM_VIDEO_MAX_DURATION_S",
            "-1",
            "RUNPOD_SLIM_VIDEO_MAX_DURATION_S='-1' is not valid: a whole number > 0",
        ),
        (
            "RUNPOD_SLIM_VIDEO_MAX_PIXELS",
            "4k",
            "RUNPOD_SLIM_VIDEO_MAX_PIXELS='4k' is not valid: a whole number > 0",
        ),
        (
            "RUNPOD_SLIM_VIDEO_MAX_PIXELS",
            "\u00b2",
            "RUNPOD_SLIM_VIDEO_MAX_PIXELS='\u00b2' is not valid: a whole number > 0",
        ),
        (
            "RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB",
            "nan",
            "RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB='nan' is not valid: a number of megabytes > 0",
        ),
        (
            "RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB",
            "inf",
            "RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB='inf' is not valid: a number of megabytes > 0",
        ),
        (
            "RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB",
            "1e400",
            "RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB='1e400' is not valid: a number of megabytes > 0",
        ),
    ],
)
def test_bad_values_name_the_variable_the_value_and_what_is_allowed(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load({name: value})
    assert str(caught.value) == message


def test_a_long_value_is_shortened_in_the_refusal() -> None:
    with pytest.raises(SettingsError) as caught:
        load({"RUNPOD_SLIM_VIDEO_MAX_PIXELS": "x" * 500})
    assert str(caught.value) == (
        "RUNPOD_SLIM_VIDEO_MAX_PIXELS='" + "x" * 57 + "...' is not valid: a whole number > 0"
    )


def test_the_handler_takes_its_settings_or_reads_them_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = load_config({"RUNPOD_SLIM_VOLUME": "/nonexistent"})
    given = VideoSettings(max_duration_s=5)
    assert VideoHandler(config, given).settings is given
    monkeypatch.setenv("RUNPOD_SLIM_VIDEO_MAX_DURATION_S", "7")
    assert VideoHandler(config).settings.max_duration_s == 7
