"""Putting a job's result file where it was asked for, or inline when it fits."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from .. import volume
from ..errors import JobError
from .files import copy_file
from .job import JobIO
from .locations import OUTPUTS, S3Location, parse_s3, safe_name, scheme_of
from .s3 import presign, s3_client, s3_error, transfer_config


def deliver(
    path: Path, destination: str | None, field: str, job: JobIO, *, expires_s: int = 3600
) -> dict[str, Any]:
    """Put a result file where it was asked for, or inline when small enough.

    Returns the output fields: `base64` inline; or `destination` and `url` (s3, presigned) or
    `path` (volume). Too big for inline without a destination: the volume when attached, else
    a clear error saying to give one.
    """
    config = job.config
    size = path.stat().st_size
    if destination is None:
        if size <= config.inline_max_bytes:
            return {"base64": base64.b64encode(path.read_bytes()).decode(), "bytes": size}
        if not config.volume.is_dir():
            raise JobError(
                f"the result is {size / 1e6:.1f} MB, over the "
                f"{config.inline_max_bytes / 1e6:.0f} MB "
                f"that fit in a RunPod response; give {field} (s3://bucket/key or volume://path)"
            )
        destination = f"volume://{OUTPUTS}/{safe_name(job.id)}/{path.name}"
    scheme = scheme_of(destination, field, ("s3", "volume"))
    if scheme == "volume":
        dest = volume.parse(destination, field, config)
        copy_file(path, dest)
        return {"destination": destination, "path": str(dest.path), "bytes": size}
    location = parse_s3(destination, field)
    if not location.key or location.key.endswith("/"):
        location = S3Location(location.bucket, location.key + path.name)
    client = s3_client(job.credentials())
    try:
        client.upload_file(str(path), location.bucket, location.key, Config=transfer_config())
        url = presign(client, location, expires_s)
    except Exception as exc:
        raise s3_error(exc, location) from None
    return {"destination": str(location), "url": url, "bytes": size}
