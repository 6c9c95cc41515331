"""Moved to handlers.transfer; this name stays until every importer has moved (then goes)."""

from __future__ import annotations

from .transfer import (
    MAX_BASE64_CHARS,
    OUTPUTS,
    SOURCE_SCHEMES,
    JobIO,
    S3Location,
    Target,
    copy_file,
    credentials_for,
    decode_base64,
    deliver,
    fetch_source,
    parse_s3,
    presign,
    redact,
    s3_client,
    s3_error,
    scheme_of,
    shown_url,
    transfer_config,
    volume_path,
)

__all__ = [
    "MAX_BASE64_CHARS",
    "OUTPUTS",
    "SOURCE_SCHEMES",
    "JobIO",
    "S3Location",
    "Target",
    "copy_file",
    "credentials_for",
    "decode_base64",
    "deliver",
    "fetch_source",
    "parse_s3",
    "presign",
    "redact",
    "s3_client",
    "s3_error",
    "scheme_of",
    "shown_url",
    "transfer_config",
    "volume_path",
]
