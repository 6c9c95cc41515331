"""Results of any size: what fits in a RunPod response, and where the rest goes.

RunPod refuses a job's result over 10 MB on /run and 20 MB on /runsync, and a streamed chunk
over 1 MB; the serialized JSON counts, and base64 makes bytes 4/3 as long. A worker cannot
tell which route a job came by, so a file is returned inline only when it is at most
RUNPOD_SLIM_INLINE_MAX_MB (7 MB by default: its base64 fits /run's 10 MB) and, whatever that
setting says, its base64 fits /runsync's 20 MB. A bigger result goes where the job asked; or,
when it asked nowhere, to RUNPOD_SLIM_RESULTS_URL, else the volume's outputs folder, and the
output says so ("offloaded"); with none of those the job is refused, before its work starts
wherever the result's size is known or bounded in advance (JobContext.check_destination).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from bootstrap.errors import SettingsError

from ..config import INLINE_MAX_MB, RESULTS_URL, HandlerConfig
from ..errors import JobError
from .locations import OUTPUTS, parse_s3, safe_name

RUN_LIMIT_BYTES = 10_000_000  # RunPod's largest /run result, serialized
RUNSYNC_LIMIT_BYTES = 20_000_000  # RunPod's largest /runsync result, serialized
STREAM_CHUNK_LIMIT_BYTES = 1_000_000  # RunPod's largest streamed chunk, serialized
# Room left for the rest of a job's output (its other fields) beside an inline file.
OUTPUT_RESERVE_BYTES = 100_000
WHERE_TO = "s3://bucket/key, volume://path or an https:// presigned PUT URL"


def encoded_size(size: int) -> int:
    """The length of `size` bytes in base64."""
    return 4 * ((size + 2) // 3)


def largest_inline(limit_bytes: int) -> int:
    """The most bytes whose base64, with the output's reserve, fits in `limit_bytes`."""
    return max(0, (limit_bytes - OUTPUT_RESERVE_BYTES) // 4 * 3)


def inline_limit(config: HandlerConfig) -> int:
    """The most bytes a result may have to come back inline (base64) on this worker."""
    return min(config.inline_max_bytes, largest_inline(RUNSYNC_LIMIT_BYTES))


def offload_place(config: HandlerConfig) -> str | None:
    """Where a result too big to return inline goes when the job names no destination."""
    if config.results_url is not None:
        return config.results_url
    if config.volume.is_dir():
        return f"volume://{OUTPUTS}/"
    return None


def offload_destination(config: HandlerConfig, job_id: str, name: str) -> str | None:
    """The full destination of an offloaded result: its own folder per job, its file name."""
    place = offload_place(config)
    if place is None:
        return None
    return f"{place.rstrip('/')}/{safe_name(job_id)}/{name}"


def why_offloaded(size: int, config: HandlerConfig) -> str:
    """The sentence an offloaded result's output carries."""
    return (
        f"the result is {size / 1e6:.1f} MB, over the {inline_limit(config) / 1e6:.1f} MB "
        f"returned inline ({INLINE_MAX_MB}; RunPod takes {RUN_LIMIT_BYTES // 10**6} MB on "
        f"/run, {RUNSYNC_LIMIT_BYTES // 10**6} MB on /runsync)"
    )


def nowhere_error(size: int, field: str, config: HandlerConfig, *, bound: bool = False) -> JobError:
    """The refusal of a result too big to return, on a worker with nowhere to put it."""
    what = "may be up to" if bound else "is"
    return JobError(
        f"the result {what} {size / 1e6:.1f} MB, over the {inline_limit(config) / 1e6:.1f} MB "
        f"that fit inline in a RunPod response, and this worker has nowhere to put it: give "
        f"{field} ({WHERE_TO}), or set {RESULTS_URL} on the endpoint"
    )


def check_room(most_bytes: int | None, field: str, config: HandlerConfig) -> None:
    """Refuse a job, before its work, whose result (at most `most_bytes`) would have nowhere
    to go: too big to return inline, no destination given, and no place to offload it.

    `most_bytes` None (the size cannot be bounded in advance): nothing to refuse yet.
    """
    if most_bytes is None or most_bytes <= inline_limit(config):
        return
    if offload_place(config) is None:
        raise nowhere_error(most_bytes, field, config, bound=True)


def stream_chunk_bytes(chunk: Mapping[str, Any]) -> int:
    """The length of a streamed chunk as RunPod receives it (serialized JSON)."""
    return len(json.dumps(chunk).encode())


def check_stream_chunk(chunk: Mapping[str, Any], what: str = "a streamed chunk") -> int:
    """A chunk's serialized length, or a JobError when it is over RunPod's 1 MB per chunk."""
    size = stream_chunk_bytes(chunk)
    if size > STREAM_CHUNK_LIMIT_BYTES:
        raise JobError(
            f"{what} is {size / 1e6:.2f} MB as JSON, over the "
            f"{STREAM_CHUNK_LIMIT_BYTES / 1e6:.0f} MB RunPod takes per streamed chunk"
        )
    return size


def results_setting(variable: str, raw: str, has_bucket: bool) -> str | None:
    """RUNPOD_SLIM_RESULTS_URL checked at start: s3://bucket/prefix or volume://folder."""
    value = raw.strip()
    if not value:
        return None
    shown = value if len(value) <= 100 else value[:97] + "..."
    allowed = "s3://bucket/prefix or volume://folder (where results too big to return go)"
    if value.startswith("s3://"):
        try:
            parse_s3(value, variable)
        except JobError:
            raise SettingsError(variable, shown, allowed) from None
        if not has_bucket:
            raise SettingsError(
                variable,
                shown,
                "an s3:// place needs BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY set too",
            )
        return value
    if value.startswith("volume://"):
        relative = value[len("volume://") :]
        parts = PurePosixPath(relative).parts
        if relative.startswith("/") or ".." in parts or "\x00" in relative:
            raise SettingsError(variable, shown, "a relative volume:// folder without '..'")
        return value
    raise SettingsError(variable, shown, allowed)
