"""Where job data comes from and where results go: one package, one module per concern.

- `locations`: URL schemes, `s3://bucket/key`, `volume://path`, checked;
- `s3`: whose credentials (checked once per job), a client, its errors, presigned URLs;
- `sources`: URL downloads, s3:// and volume:// sources, base64 fields, size limits;
- `files`: atomic writes and hashing as bytes arrive;
- `destinations`: a result inline, to s3://, volume:// or a presigned PUT URL;
- `results`: RunPod's size limits, where a result too big to return goes, streamed chunks;
- `outputs`: a job's whole output (its JSON) against those limits.

Safety, in one place: a volume path never leaves the volume (no absolute paths, no `..`, no
symlink out); a URL goes to public addresses only unless RUNPOD_SLIM_ALLOW_PRIVATE_URLS is
set; credentials and signed URLs are never logged or returned (errors pass through `redact`).
Handlers reach all of it through JobContext.fetch and JobContext.deliver.
"""

from __future__ import annotations

from ..redaction import redact, shown_url
from .destinations import bare_url, deliver, put_url
from .files import copy_file
from .job import JobIO
from .locations import (
    DESTINATION_SCHEMES,
    OUTPUTS,
    SOURCE_SCHEMES,
    S3Location,
    Target,
    parse_s3,
    scheme_of,
    volume_path,
)
from .outputs import fit_output
from .results import (
    RUN_LIMIT_BYTES,
    RUNSYNC_LIMIT_BYTES,
    STREAM_CHUNK_LIMIT_BYTES,
    check_room,
    check_stream_chunk,
    inline_limit,
    largest_inline,
    stream_chunk_bytes,
)
from .s3 import credentials_for, presign, s3_client, s3_error, transfer_config
from .sources import MAX_BASE64_CHARS, decode_base64, fetch_source

__all__ = [
    "DESTINATION_SCHEMES",
    "MAX_BASE64_CHARS",
    "OUTPUTS",
    "RUNSYNC_LIMIT_BYTES",
    "RUN_LIMIT_BYTES",
    "SOURCE_SCHEMES",
    "STREAM_CHUNK_LIMIT_BYTES",
    "JobIO",
    "S3Location",
    "Target",
    "bare_url",
    "check_room",
    "check_stream_chunk",
    "copy_file",
    "credentials_for",
    "decode_base64",
    "deliver",
    "fetch_source",
    "fit_output",
    "inline_limit",
    "largest_inline",
    "parse_s3",
    "presign",
    "put_url",
    "redact",
    "s3_client",
    "s3_error",
    "scheme_of",
    "shown_url",
    "stream_chunk_bytes",
    "transfer_config",
    "volume_path",
]
