"""The tts handler's own settings, read once from the environment passed in.

Standard library only: the worker checks them before anything is installed, so a bad value
costs no install first, and only a tts worker reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bootstrap.errors import SettingsError
from bootstrap.settings import choice_setting

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
        max_chars=_positive_whole(environ, MAX_CHARS, DEFAULT_MAX_CHARS),
        stream=_flag(environ, STREAM),
    )


def _flag(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "").strip()
    if raw.lower() in ("", "0", "false", "no", "off"):
        return False
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    raise SettingsError(name, shown, "use 1/true/yes/on or 0/false/no/off")


def _positive_whole(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        shown = raw if len(raw) <= 60 else raw[:57] + "..."
        raise SettingsError(name, shown, "a whole number > 0")
    return int(raw)
