"""What every handler reads from the environment, parsed once from a mapping passed in.

A handler's own settings live beside it (handlers/<name>/settings.py, named by the bootstrap's
catalog): only the chosen handler's are read, so a bad value stops only the worker that uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bootstrap.settings import Settings, load_settings

from .setting_values import megabytes, positive_whole

ALLOW_PRIVATE_URLS = "RUNPOD_SLIM_ALLOW_PRIVATE_URLS"
SDK_ALLOW_PRIVATE_URLS = "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS"  # the RunPod SDK's own name
MAX_DOWNLOAD_MB = "RUNPOD_SLIM_MAX_DOWNLOAD_MB"
INLINE_MAX_MB = "RUNPOD_SLIM_INLINE_MAX_MB"
RESULTS_URL = "RUNPOD_SLIM_RESULTS_URL"  # where results too big to return inline go
BUCKET_ENDPOINT_URL = "BUCKET_ENDPOINT_URL"
BUCKET_ACCESS_KEY_ID = "BUCKET_ACCESS_KEY_ID"
BUCKET_SECRET_ACCESS_KEY = "BUCKET_SECRET_ACCESS_KEY"
BUCKET_REGION = "BUCKET_REGION"
JOB_TIMEOUT_S = "RUNPOD_SLIM_JOB_TIMEOUT_S"
HF_TOKEN = "HF_TOKEN"  # model downloads (audio diarization, tts weights): a secret


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
    job_timeout_s: int = 3600  # every job's time limit, whatever it does
    hf_token: str | None = None  # Hugging Face token (model downloads); never logged or returned
    results_url: str | None = None  # s3://bucket/prefix or volume://folder (handlers.transfer)

    def secrets(self) -> tuple[str, ...]:
        found = (self.bucket.secret_access_key,) if self.bucket else ()
        return (*found, self.hf_token) if self.hf_token else found


def load_config(environ: Mapping[str, str], *, bootstrap: Settings | None = None) -> HandlerConfig:
    """Handler settings from an environment mapping; bad values name the variable.

    `bootstrap`: the bootstrap's settings of the same environment, already parsed
    (the worker's start), so they are not parsed again. Stdlib only, so that a worker checks
    them before it installs anything.
    """
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
        max_download_bytes=int(megabytes(environ, MAX_DOWNLOAD_MB, 2048) * 1e6),
        # /run takes 10 MB; base64 grows bytes by 4/3, and the JSON around it needs room.
        inline_max_bytes=int(megabytes(environ, INLINE_MAX_MB, 7) * 1e6),
        bucket=bucket,
        job_timeout_s=positive_whole(environ, JOB_TIMEOUT_S, 3600),
        hf_token=environ.get(HF_TOKEN, "").strip() or None,
        results_url=_results_url(environ.get(RESULTS_URL, ""), bucket is not None),
    )


def _results_url(raw: str, has_bucket: bool) -> str | None:
    from .transfer.results import results_setting  # that package imports this module

    return results_setting(RESULTS_URL, raw, has_bucket)
