"""Putting a job's result file where it was asked for, or inline when it fits.

Destinations: `s3://bucket/key` (a GET URL presigned for the caller), `volume://path`, and an
`https://` presigned PUT URL (the bytes are PUT there, through the same address rules as URL
sources; the URL given back has no query, where its signature is). Every way streams the
file: a result of any size is never read whole, only an inline one is.
"""

from __future__ import annotations

import base64
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from .. import netguard, volume
from ..config import JOB_TIMEOUT_S, RESULTS_URL
from ..errors import JobError
from ..redaction import short, shown_url
from .files import copy_file
from .http_failures import http_failures
from .job import JobIO
from .locations import DESTINATION_SCHEMES, S3Location, parse_s3, scheme_of
from .results import inline_limit, nowhere_error, offload_destination, why_offloaded
from .s3 import presign, s3_client, s3_error, transfer_config, worker_credentials


def deliver(
    path: Path, destination: str | None, field: str, job: JobIO, *, expires_s: int = 3600
) -> dict[str, Any]:
    """Put a result file where it was asked for, or inline when it fits a RunPod response.

    Returns the output fields: `base64` inline; or `destination` and `url` (s3, presigned
    GET), `path` (volume), or nothing more (a PUT URL); and `bytes`. A result too big for
    inline without a destination goes to the worker's results place (RUNPOD_SLIM_RESULTS_URL,
    else the volume's outputs folder) with `offloaded` saying why; with neither, a JobError.
    """
    config = job.config
    size = path.stat().st_size
    if destination is not None:
        return _put(path, destination, field, job, expires_s, own_place=False)
    if size <= inline_limit(config):
        return {"base64": base64.b64encode(path.read_bytes()).decode(), "bytes": size}
    place = offload_destination(config, job.id, path.name)
    if place is None:
        raise nowhere_error(size, field, config)
    # An error there is about the worker's setting, not about a field of the job.
    where = RESULTS_URL if config.results_url is not None else "the volume's outputs folder"
    delivered = place_result(path, place, where, job, expires_s=expires_s)
    return {**delivered, "offloaded": why_offloaded(size, config)}


def place_result(
    path: Path, destination: str, field: str, job: JobIO, *, expires_s: int = 3600
) -> dict[str, Any]:
    """Put a file in the worker's own results place (RUNPOD_SLIM_RESULTS_URL or the volume's
    outputs folder), with the worker's credentials: deliver()'s output fields."""
    return _put(path, destination, field, job, expires_s, own_place=True)


def _put(
    path: Path, destination: str, field: str, job: JobIO, expires_s: int, *, own_place: bool
) -> dict[str, Any]:
    size = path.stat().st_size
    scheme = scheme_of(destination, field, DESTINATION_SCHEMES)
    if scheme == "volume":
        dest = volume.parse(destination, field, job.config)
        copy_file(path, dest)
        return {"destination": destination, "path": str(dest.path), "bytes": size}
    if scheme in ("https", "http"):
        put_url(path, destination, field, job)
        return {"destination": bare_url(destination), "bytes": size}
    location = parse_s3(destination, field)
    if not location.key or location.key.endswith("/"):
        location = S3Location(location.bucket, location.key + path.name)
    # The worker's own results place takes the worker's credentials, not the job's.
    credentials = worker_credentials(job.config) if own_place else job.credentials()
    client = s3_client(credentials)
    try:
        client.upload_file(str(path), location.bucket, location.key, Config=transfer_config())
        url = presign(client, location, expires_s)
    except Exception as exc:
        raise s3_error(exc, location) from None
    return {"destination": str(location), "url": url, "bytes": size}


def bare_url(url: str) -> str:
    """A URL without userinfo, query and fragment: what an output may show of a signed URL."""
    return shown_url(url).removesuffix("?...")


class _Body:
    """The file a PUT sends, read in blocks; each block first checks the job's time left."""

    def __init__(self, source: IO[bytes], before_each: Any) -> None:
        self.source = source
        self.before_each = before_each

    def read(self, size: int = -1) -> bytes:
        self.before_each()
        return self.source.read(size)


_S3_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,60})</Code>")


def put_url(path: Path, url: str, field: str, job: JobIO) -> None:
    """PUT the file's bytes to a presigned URL, streamed, within the job's time limit.

    The host is resolved once and checked like a URL source's (public addresses only unless
    RUNPOD_SLIM_ALLOW_PRIVATE_URLS); errors show the URL without its query (the signature).
    """
    config = job.config
    shown = short(bare_url(url))
    guard = netguard.Guard(field, shown, config.allow_private_urls)
    try:
        host, port = netguard.endpoint_host(url)
    except ValueError:
        raise JobError(f"{field}={shown} has a port that is not a number from 1 to 65535") from None
    guard.addresses(host, port)  # refused before any connection when private

    def left() -> float:
        remaining = job.deadline - time.monotonic()
        if remaining <= 0:
            raise JobError(
                f"{field}: the upload to {shown} did not finish within the job's time limit "
                f"({config.job_timeout_s} s, {JOB_TIMEOUT_S})"
            )
        return min(60.0, remaining)

    def before_each() -> None:
        guard.set_timeout(left())

    size = path.stat().st_size
    with (
        http_failures(
            field,
            shown,
            guard,
            verb="upload to",
            idle="took no data",
            left=left,
            answered=_s3_code,
        ),
        path.open("rb") as source,
    ):
        request = urllib.request.Request(
            url,
            data=_Body(source, before_each),
            method="PUT",
            headers={
                "Content-Length": str(size),
                "Content-Type": "application/octet-stream",
                "User-Agent": "runpod-slim",
            },
        )
        # No redirect handler: a PUT is never redirected (urllib refuses it as an error).
        with netguard.opener(guard).open(request, timeout=left()) as response:
            response.read()


def _s3_code(exc: urllib.error.HTTPError) -> str:
    """What an S3-style PUT URL said besides its status: its error code, if it gave one."""
    found = _S3_CODE.search(exc.read(4096) or b"")
    return (f" ({found.group(1).decode()})" if found else "") + " to the upload"
