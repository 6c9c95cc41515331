"""The tts handler's own settings, read once from the environment passed in.

Standard library only: the worker checks them before anything is installed, so a bad value
costs no install first, and only a tts worker reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bootstrap.settings import choice_setting

from ..setting_values import flag, positive_whole

ENGINE = "RUNPOD_SLIM_TTS_ENGINE"
MAX_CHARS = "RUNPOD_SLIM_TTS_MAX_CHARS"
STREAM = "RUNPOD_SLIM_TTS_STREAM"
ENGINE_CHOICES = ("piper", "kokoro", "qwen")
DEFAULT_MAX_CHARS = 5000


@dataclass(frozen=True)
class TTSSettings:
    """How a tts worker speaks when a job does not say."""

    engine: str = "piper"  # the engine a job gets when it names none (and that setup loads)
    max_chars: int = DEFAULT_MAX_CHARS  # the longest text one job may speak
    # A streaming worker (the SDK gets a generator): jobs may ask for a chunk per piece, and
    # /runsync answers with a list. Off: /runsync answers with one object (TTSHandler.streaming).
    stream: bool = False


def load(environ: Mapping[str, str]) -> TTSSettings:
    """The tts settings in `environ`; a SettingsError naming the variable for a bad value."""
    return TTSSettings(
        engine=choice_setting(environ, ENGINE, "piper", ENGINE_CHOICES),
        max_chars=positive_whole(environ, MAX_CHARS, DEFAULT_MAX_CHARS),
        stream=flag(environ, STREAM),
    )
