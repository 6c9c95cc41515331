"""The storage handler's actions and the fields each one takes (validated by validation.py)."""

from __future__ import annotations

from ..validation import Field

ACTIONS = ("copy", "presign", "list", "stat", "delete", "cache")
_CREDENTIALS = Field(
    dict, secret=True, help="endpoint_url, access_key_id, secret_access_key, region"
)
_SOURCE = Field(str, required=True, help="s3://bucket/key or volume://path")
MAX_BASE64_CHARS = 14_000_000  # ~10 MB decoded: RunPod's /run payload limit
MAX_EXPIRES_S = 604_800  # S3's longest presigned URL: 7 days

FIELDS: dict[str, dict[str, Field]] = {
    "copy": {
        "source": Field(str, help="https://..., s3://bucket/key or volume://path"),
        "source_base64": Field(str, max_length=MAX_BASE64_CHARS),
        "destination": Field(str, required=True, help="s3://bucket/key or volume://path"),
        "expires_s": Field(int, minimum=1, maximum=MAX_EXPIRES_S),
        "credentials": _CREDENTIALS,
    },
    "presign": {
        "source": _SOURCE,
        "expires_s": Field(int, minimum=1, maximum=MAX_EXPIRES_S),
        "credentials": _CREDENTIALS,
    },
    "list": {
        "source": _SOURCE,
        "limit": Field(int, default=1000, minimum=1, maximum=1000),
        "cursor": Field(str),
        "credentials": _CREDENTIALS,
    },
    "stat": {"source": _SOURCE, "credentials": _CREDENTIALS},
    "delete": {"source": _SOURCE, "credentials": _CREDENTIALS},
    "cache": {
        "prune": Field(bool, default=False),
        "keep": Field(int, minimum=1, help="envs to keep when pruning"),
        "dry_run": Field(bool, default=False),
    },
}
