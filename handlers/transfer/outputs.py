"""A job's whole output against RunPod's limits: its serialized JSON is what counts.

deliver() keeps a file inline only with room for the rest of the output; this is the check
on the whole, for outputs that grow without a file (a 4-hour transcript with word times).
An output over /run's 10 MB goes, as `output.json`, to the worker's results place; without
one it is returned as it is up to /runsync's 20 MB (that route takes it), refused above.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import RESULTS_URL
from ..errors import JobError
from .destinations import place_result
from .files import atomic_write
from .job import JobIO
from .results import RUN_LIMIT_BYTES, RUNSYNC_LIMIT_BYTES, offload_destination

OUTPUT_NAME = "output.json"


def fit_output(output: dict[str, Any], workdir: Path, job: JobIO) -> dict[str, Any]:
    """`output` when its JSON fits /run; else where it was put, saying why; or a JobError."""
    encoded = json.dumps(output).encode()
    size = len(encoded)
    if size <= RUN_LIMIT_BYTES:
        return output
    place = offload_destination(job.config, job.id, OUTPUT_NAME)
    if place is None:
        if size <= RUNSYNC_LIMIT_BYTES:
            return output  # /runsync takes it; /run would not, and nothing here can change that
        raise JobError(
            f"the job's output is {size / 1e6:.1f} MB as JSON, over the "
            f"{RUNSYNC_LIMIT_BYTES // 10**6} MB RunPod takes, and this worker has nowhere to "
            f"put it: set {RESULTS_URL} on the endpoint, or attach a network volume"
        )
    path = workdir / OUTPUT_NAME
    with atomic_write(path) as out:
        out.write(encoded)
    try:
        delivered = place_result(path, place, RESULTS_URL, job)
    finally:
        path.unlink(missing_ok=True)
    why = (
        f"the job's output is {size / 1e6:.1f} MB as JSON, over the "
        f"{RUN_LIMIT_BYTES // 10**6} MB RunPod takes on /run"
    )
    return {**delivered, "offloaded": why}
