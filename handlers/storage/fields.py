"""The storage handler's actions, the fields each takes, and each one's input as a typed value.

A job's input is checked by validation.py against FIELDS, then read once into the action's
frozen dataclass: the handler never reads a field by its string name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..validation import Field, validate

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
        "destination": Field(
            str, required=True, help="s3://bucket/key, volume://path or an https:// PUT URL"
        ),
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


@dataclass(frozen=True)
class Copy:
    source: str | None  # exactly one of source and source_base64 (JobContext.fetch checks)
    source_base64: str | None
    destination: str
    expires_s: int


@dataclass(frozen=True)
class Presign:
    source: str
    expires_s: int


@dataclass(frozen=True)
class Listing:
    source: str
    limit: int
    cursor: str | None


@dataclass(frozen=True)
class OneSource:
    """stat and delete: one object or file."""

    source: str


@dataclass(frozen=True)
class Cache:
    prune: bool
    keep: int | None
    dry_run: bool


Action = Copy | Presign | Listing | OneSource | Cache


def parse(action: str, given: Mapping[str, Any], expires_s: int) -> Action:
    """The job's input (without `action`) checked and read into `action`'s value.

    `expires_s`: the worker's default lifetime of presigned URLs, when the job names none.
    """
    args = validate(given, FIELDS[action])
    if action == "copy":
        return Copy(
            args["source"],
            args["source_base64"],
            args["destination"],
            args["expires_s"] or expires_s,
        )
    if action == "presign":
        return Presign(args["source"], args["expires_s"] or expires_s)
    if action == "list":
        return Listing(args["source"], args["limit"], args["cursor"] or None)
    if action == "cache":
        return Cache(args["prune"], args["keep"], args["dry_run"])
    return OneSource(args["source"])
