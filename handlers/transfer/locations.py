"""Where a job's files are: URL schemes, `s3://bucket/key` and `volume://path`, checked.

Pure parsing, no I/O but the volume walk: every refusal is one sentence naming the field,
the value (shortened) and what is allowed.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .. import volume
from ..config import HandlerConfig
from ..errors import JobError
from ..redaction import short

SOURCE_SCHEMES = ("https", "http", "s3", "volume")
# Where results may go: a bucket, the volume, or a presigned PUT URL (http for test hosts).
DESTINATION_SCHEMES = ("s3", "volume", "https", "http")
# Results too big to return inline land here: a folder jobs may read back (not the cache).
OUTPUTS = "runpod-slim-outputs"

Target = Path | volume.VolumePath  # a file in the job's own directory, or on the volume


@dataclass(frozen=True)
class S3Location:
    """An object (or a prefix, when the key is empty or ends in /) in a bucket."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,62}$")


def scheme_of(url: str, field: str, allowed: tuple[str, ...] = SOURCE_SCHEMES) -> str:
    """The URL's scheme, lower-cased, when it is one of `allowed`; else a JobError."""
    found = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)  # urlsplit raises on some URLs
    scheme = found.group(1).lower() if found else ""
    if scheme not in allowed:
        raise JobError(
            f"{field}={short(url)} has scheme {scheme or 'none'!r}; allowed: "
            + ", ".join(f"{s}://" for s in allowed)
        )
    return scheme


def parse_s3(url: str, field: str) -> S3Location:
    """`s3://bucket/key` checked: a bucket name S3 servers take, a key of valid UTF-8."""
    shown = short(url)
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme != "s3" or not parsed.netloc:
        raise JobError(f"{field}={shown} is not an s3:// location; write s3://bucket/key")
    bucket, key = parsed.netloc, url.split("://", 1)[1][len(parsed.netloc) :].lstrip("/")
    if not _BUCKET.match(bucket):
        raise JobError(
            f"{field}={shown}: {bucket[:70]!r} is not a bucket name (3 to 63 letters, digits, "
            "dots, dashes or underscores)"
        )
    if "\x00" in key or not _encodes(key) or len(key.encode(errors="replace")) > 1024:
        raise JobError(
            f"{field}={shown}: the key must be valid UTF-8, without NUL, at most 1024 bytes"
        )
    return S3Location(bucket, key)


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def volume_path(url: str, field: str, config: HandlerConfig) -> Path:
    """The path under the volume that `volume://relative/path` names; never outside it.

    Checked by handlers.volume: no link followed, never the worker's own cache.
    """
    vp = volume.parse(url, field, config)
    with contextlib.suppress(FileNotFoundError), volume.directory(vp, depth=len(vp.parts)):
        pass  # every existing folder on the way is walked and checked; a missing tail is fine
    return vp.path


def local_path(dest: Target) -> Path:
    """Where a target is on this machine."""
    return dest.path if isinstance(dest, volume.VolumePath) else dest


def safe_name(text: str) -> str:
    """A job id (or any text) as one harmless folder name."""
    kept = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in text)
    return kept.strip(".")[:100] or "job"
