"""The video handler's own settings, read from an environment mapping passed in.

Standard library only: a worker checks these before it installs anything, and only a video
worker reads them, so a bad value here never stops another handler's worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..setting_values import megabytes, positive_whole

MAX_DURATION_S = "RUNPOD_SLIM_VIDEO_MAX_DURATION_S"
MAX_PIXELS = "RUNPOD_SLIM_VIDEO_MAX_PIXELS"
MAX_OUTPUT_MB = "RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB"

DEFAULT_MAX_DURATION_S = 3600
DEFAULT_MAX_PIXELS = 3840 * 2160
DEFAULT_MAX_OUTPUT_MB = 8000.0


@dataclass(frozen=True)
class VideoSettings:
    """Limits on what one video job may bring and make."""

    max_duration_s: int = DEFAULT_MAX_DURATION_S  # the longest input a job may process
    max_pixels: int = DEFAULT_MAX_PIXELS  # the largest output frame (width x height)
    max_output_bytes: int = int(DEFAULT_MAX_OUTPUT_MB * 1e6)  # the largest file a job makes


def load(environ: Mapping[str, str]) -> VideoSettings:
    """The video settings in `environ`; a bad value raises SettingsError naming it."""
    return VideoSettings(
        max_duration_s=positive_whole(environ, MAX_DURATION_S, DEFAULT_MAX_DURATION_S),
        max_pixels=positive_whole(environ, MAX_PIXELS, DEFAULT_MAX_PIXELS),
        max_output_bytes=int(megabytes(environ, MAX_OUTPUT_MB, DEFAULT_MAX_OUTPUT_MB) * 1e6),
    )
