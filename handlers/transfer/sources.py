"""Bringing a job's source files in: URL downloads, s3:// objects, volume:// files, base64.

Every source lands in the job's own directory (or at a checked volume path) as a file,
streamed, under the size limits, hashed as it arrives. A URL download goes to public
addresses only (every address its host resolves to, and every redirect), unless
RUNPOD_SLIM_ALLOW_PRIVATE_URLS is set; no other schemes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .. import netguard, volume
from ..config import JOB_TIMEOUT_S, MAX_DOWNLOAD_MB, HandlerConfig
from ..errors import JobError
from ..redaction import short, shown_url
from .files import CHUNK, HashingWriter, atomic_write
from .http_failures import http_failures
from .job import JobIO
from .locations import Target, local_path, parse_s3, scheme_of
from .s3 import s3_client, s3_error, transfer_config

# The most base64 one field may carry: what RunPod takes in one request (/runsync's 20 MB).
# Bigger files come as a URL, s3:// or volume:// location, streamed to disk.
MAX_BASE64_CHARS = 20_000_000


def fetch_source(url: str, field: str, dest: Target, job: JobIO) -> tuple[Path, str | None]:
    """Bring the file at `url` to `dest` (written atomically): (local path, sha256).

    The sha256 is computed while the bytes stream in; a volume:// source is already local, is
    read in place (its own path is returned) and has no sha256 yet (None). Blocking: run in a
    thread.
    """
    config = job.config
    scheme = scheme_of(url, field)
    if scheme == "volume":
        path = volume.regular_file(volume.parse(url, field, config))
        check_size(path.stat().st_size, field, config)
        return path, None
    if scheme == "s3":
        location = parse_s3(url, field)
        client = s3_client(job.credentials())
        try:
            head = client.head_object(Bucket=location.bucket, Key=location.key)
            check_size(int(head["ContentLength"]), field, config)
            with atomic_write(dest) as out:
                writer = HashingWriter(out)
                client.download_fileobj(
                    location.bucket, location.key, writer, Config=transfer_config()
                )
                digest = writer.hexdigest()
        except JobError:
            raise
        except Exception as exc:
            raise s3_error(exc, location) from None
        return local_path(dest), digest
    return local_path(dest), _download_url(url, field, dest, config, job.deadline)


def decode_base64(data: str, field: str, dest: Target, config: HandlerConfig) -> tuple[Path, str]:
    """Write a base64 field to dest: (dest, sha256). Not base64 or over a limit: refused.

    The one place every `<name>_base64` field is capped: at MAX_BASE64_CHARS (what one
    request can carry), and at the download limit once decoded.
    """
    if len(data) > MAX_BASE64_CHARS:
        raise JobError(
            f"{field} is {len(data) / 1e6:.1f} MB of base64; the limit is "
            f"{MAX_BASE64_CHARS / 1e6:.0f} MB (what one RunPod request carries): give a larger "
            "file as a URL, s3:// or volume:// location instead"
        )
    if len(data) * 3 // 4 > config.max_download_bytes:
        raise JobError(
            f"{field} decodes to over {config.max_download_bytes / 1e6:.0f} MB, the limit"
        )
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]  # a data: URL's payload
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise JobError(f"{field} is not valid base64") from None
    with atomic_write(dest) as out:
        out.write(raw)
    return local_path(dest), hashlib.sha256(raw).hexdigest()


def check_size(size: int, field: str, config: HandlerConfig) -> None:
    """A JobError when a source of `size` bytes is over the download limit."""
    if size > config.max_download_bytes:
        raise JobError(
            f"{field} is {size / 1e6:.1f} MB; the limit is "
            f"{config.max_download_bytes / 1e6:.0f} MB ({MAX_DOWNLOAD_MB})"
        )


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects to http(s) only; the host is checked when the guard connects to it."""

    def __init__(self, field: str) -> None:
        self.field = field

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        scheme_of(newurl, self.field, ("https", "http"))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download_url(
    url: str, field: str, dest: Target, config: HandlerConfig, deadline: float
) -> str:
    """Stream `url` into dest under the size limit and the job's deadline: its sha256.

    The deadline holds for the whole transfer, not each read: a source that sends a byte now
    and then is cut off when the job's time is up. Each read waits at most the time left.
    """
    shown = short(shown_url(url))
    guard = netguard.Guard(field, shown, config.allow_private_urls)
    try:
        host, port = netguard.endpoint_host(url)
    except ValueError:
        raise JobError(f"{field}={shown} has a port that is not a number from 1 to 65535") from None
    guard.addresses(host, port)  # refused before any connection when private
    opener = netguard.opener(guard, _CheckedRedirects(field))
    request = urllib.request.Request(url, headers={"User-Agent": "runpod-slim"})

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise JobError(
                f"{field}: {shown} did not arrive within the job's time limit "
                f"({config.job_timeout_s} s, {JOB_TIMEOUT_S})"
            )
        return min(60.0, remaining)

    with (
        http_failures(field, shown, guard, verb="download", idle="stopped sending", left=left),
        opener.open(request, timeout=left()) as response,
    ):
        length = response.headers.get("Content-Length")
        if length and length.isdigit():
            check_size(int(length), field, config)
        with atomic_write(dest) as out:
            writer = HashingWriter(out)
            done = 0
            while True:
                guard.set_timeout(left())
                chunk = response.read1(CHUNK)  # what has arrived: the deadline is seen
                if not chunk:
                    break
                done += len(chunk)
                check_size(done, field, config)
                writer.write(chunk)
        return writer.hexdigest()
