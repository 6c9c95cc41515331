"""The audio handler's own settings, read once from an environment mapping passed in.

Standard library only: a worker checks them before it installs anything, and only an audio
worker reads them, so a bad value here never stops another handler's worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..setting_values import positive_whole

AUDIO_MODEL = "RUNPOD_SLIM_AUDIO_MODEL"
AUDIO_MAX_MODELS = "RUNPOD_SLIM_AUDIO_MAX_MODELS"
AUDIO_MAX_DURATION_S = "RUNPOD_SLIM_AUDIO_MAX_DURATION_S"
HF_TOKEN = "HF_TOKEN"

DEFAULT_MODEL = "large-v3"


@dataclass(frozen=True)
class AudioSettings:
    """What an audio worker is told by its environment."""

    model: str = DEFAULT_MODEL  # the Whisper model when a job names none
    max_models: int = 2  # Whisper models kept in memory at once
    max_duration_s: int = 4 * 3600  # the longest audio one job may bring
    hf_token: str | None = None  # Hugging Face token (diarization); never logged or returned

    def __repr__(self) -> str:
        token = "***" if self.hf_token else None
        return (
            f"AudioSettings(model={self.model!r}, max_models={self.max_models}, "
            f"max_duration_s={self.max_duration_s}, hf_token={token})"
        )


def load(environ: Mapping[str, str]) -> AudioSettings:
    """The audio settings in `environ`; a SettingsError names the variable and what is allowed."""
    return AudioSettings(
        model=environ.get(AUDIO_MODEL, "").strip() or DEFAULT_MODEL,
        max_models=positive_whole(environ, AUDIO_MAX_MODELS, 2),
        max_duration_s=positive_whole(environ, AUDIO_MAX_DURATION_S, 4 * 3600),
        hf_token=environ.get(HF_TOKEN, "").strip() or None,
    )
