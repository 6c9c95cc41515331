"""What the handlers read from the environment, parsed once from a mapping passed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bootstrap.errors import SettingsError
from bootstrap.settings import Settings, choice_setting, load_settings

ALLOW_PRIVATE_URLS = "RUNPOD_SLIM_ALLOW_PRIVATE_URLS"
SDK_ALLOW_PRIVATE_URLS = "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS"  # the RunPod SDK's own name
MAX_DOWNLOAD_MB = "RUNPOD_SLIM_MAX_DOWNLOAD_MB"
INLINE_MAX_MB = "RUNPOD_SLIM_INLINE_MAX_MB"
RESULTS_URL = "RUNPOD_SLIM_RESULTS_URL"  # where results too big to return inline go
BUCKET_ENDPOINT_URL = "BUCKET_ENDPOINT_URL"
BUCKET_ACCESS_KEY_ID = "BUCKET_ACCESS_KEY_ID"
BUCKET_SECRET_ACCESS_KEY = "BUCKET_SECRET_ACCESS_KEY"
BUCKET_REGION = "BUCKET_REGION"
TTS_ENGINE = "RUNPOD_SLIM_TTS_ENGINE"
TTS_MAX_CHARS = "RUNPOD_SLIM_TTS_MAX_CHARS"
VIDEO_MAX_DURATION_S = "RUNPOD_SLIM_VIDEO_MAX_DURATION_S"
VIDEO_MAX_PIXELS = "RUNPOD_SLIM_VIDEO_MAX_PIXELS"
VIDEO_MAX_OUTPUT_MB = "RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB"
JOB_TIMEOUT_S = "RUNPOD_SLIM_JOB_TIMEOUT_S"
AUDIO_MODEL = "RUNPOD_SLIM_AUDIO_MODEL"
AUDIO_MAX_MODELS = "RUNPOD_SLIM_AUDIO_MAX_MODELS"
AUDIO_MAX_DURATION_S = "RUNPOD_SLIM_AUDIO_MAX_DURATION_S"
HF_TOKEN = "HF_TOKEN"
TTS_ENGINES = ("piper", "kokoro")
# Settings only one handler reads: another handler's worker never parses them, so a bad value
# stops only the worker that would use it.
OWN_SETTINGS = {
    TTS_ENGINE: "tts",
    TTS_MAX_CHARS: "tts",
    VIDEO_MAX_DURATION_S: "video",
    VIDEO_MAX_PIXELS: "video",
    VIDEO_MAX_OUTPUT_MB: "video",
    AUDIO_MODEL: "audio",
    AUDIO_MAX_MODELS: "audio",
    AUDIO_MAX_DURATION_S: "audio",
}


@dataclass(frozen=True)
class BucketCredentials:
    """Where and how to reach an S3-compatible store. The secret is never logged or returned."""

    endpoint_url: str | None
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    # A job's own credentials: its endpoint is checked and connected to as a URL source is.
    job_given: bool = False
    allow_private: bool = False  # RUNPOD_SLIM_ALLOW_PRIVATE_URLS, for a job's own endpoint

    def __repr__(self) -> str:
        return f"BucketCredentials(endpoint_url={self.endpoint_url!r}, access_key_id=***)"


@dataclass(frozen=True)
class HandlerConfig:
    """Limits and locations shared by every handler."""

    volume: Path
    cache_root: Path  # the bootstrap's cache (the storage handler's `cache` action)
    keep_envs: int
    allow_private_urls: bool
    max_download_bytes: int
    inline_max_bytes: int  # outputs larger than this go to the bucket or the volume
    bucket: BucketCredentials | None
    tts_engine: str = "piper"  # the tts handler's engine when a job names none
    tts_max_chars: int = 5000  # the longest text one tts job may speak
    video_max_duration_s: int = 3600  # the longest input a video job may process
    video_max_pixels: int = 3840 * 2160  # the largest output frame (width x height)
    video_max_output_bytes: int = 8 * 10**9  # the largest file a video job may make
    job_timeout_s: int = 3600  # every job's time limit, whatever it does
    audio_model: str = "large-v3"  # the audio handler's Whisper model when a job names none
    audio_max_models: int = 2  # Whisper models the audio handler keeps in memory
    audio_max_duration_s: int = 4 * 3600  # the longest audio one audio job may bring
    hf_token: str | None = None  # Hugging Face token (diarization); never logged or returned
    results_url: str | None = None  # s3://bucket/prefix or volume://folder (handlers.transfer)

    def secrets(self) -> tuple[str, ...]:
        found = (self.bucket.secret_access_key,) if self.bucket else ()
        return (*found, self.hf_token) if self.hf_token else found


def load_config(
    environ: Mapping[str, str],
    handler_type: str | None = None,
    *,
    bootstrap: Settings | None = None,
) -> HandlerConfig:
    """Handler settings from an environment mapping; bad values name the variable.

    With `handler_type`, settings that belong to other handlers are left at their defaults,
    unread. `bootstrap`: the bootstrap's settings of the same environment, already parsed
    (the worker's start), so they are not parsed again. Stdlib only, so that a worker checks
    them before it installs anything.
    """
    if handler_type is not None:
        environ = {
            k: v for k, v in environ.items() if OWN_SETTINGS.get(k, handler_type) == handler_type
        }
    bucket = None
    key, secret = environ.get(BUCKET_ACCESS_KEY_ID, ""), environ.get(BUCKET_SECRET_ACCESS_KEY, "")
    if key and secret:
        bucket = BucketCredentials(
            endpoint_url=environ.get(BUCKET_ENDPOINT_URL) or None,
            access_key_id=key,
            secret_access_key=secret,
            region=environ.get(BUCKET_REGION) or "us-east-1",
        )
    if bootstrap is None:
        bootstrap = load_settings(environ)
    private = environ.get(ALLOW_PRIVATE_URLS) or environ.get(SDK_ALLOW_PRIVATE_URLS) or ""
    return HandlerConfig(
        volume=bootstrap.volume,
        cache_root=bootstrap.cache_root,
        keep_envs=bootstrap.keep_envs,
        allow_private_urls=private.strip().lower() in ("1", "true", "yes", "on"),
        max_download_bytes=int(_megabytes(environ, MAX_DOWNLOAD_MB, 2048) * 1e6),
        # /run takes 10 MB; base64 grows bytes by 4/3, and the JSON around it needs room.
        inline_max_bytes=int(_megabytes(environ, INLINE_MAX_MB, 7) * 1e6),
        bucket=bucket,
        tts_engine=choice_setting(environ, TTS_ENGINE, "piper", TTS_ENGINES),
        tts_max_chars=_count(environ, TTS_MAX_CHARS, 5000),
        video_max_duration_s=_count(environ, VIDEO_MAX_DURATION_S, 3600),
        video_max_pixels=_count(environ, VIDEO_MAX_PIXELS, 3840 * 2160),
        video_max_output_bytes=int(_megabytes(environ, VIDEO_MAX_OUTPUT_MB, 8000) * 1e6),
        job_timeout_s=_count(environ, JOB_TIMEOUT_S, 3600),
        audio_model=environ.get(AUDIO_MODEL, "").strip() or "large-v3",
        audio_max_models=_count(environ, AUDIO_MAX_MODELS, 2),
        audio_max_duration_s=_count(environ, AUDIO_MAX_DURATION_S, 4 * 3600),
        hf_token=environ.get(HF_TOKEN, "").strip() or None,
        results_url=_results_url(environ.get(RESULTS_URL, ""), bucket is not None),
    )


def _results_url(raw: str, has_bucket: bool) -> str | None:
    from .transfer.results import results_setting  # that package imports this module

    return results_setting(RESULTS_URL, raw, has_bucket)


def _megabytes(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, raw, "a number of megabytes > 0") from None
    if value <= 0:
        raise SettingsError(name, raw, "a number of megabytes > 0")
    return value


def _count(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise SettingsError(name, raw, "a whole number > 0")
    return int(raw)
