"""What a transfer needs to know of its job, as one value (JobContext makes it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import BucketCredentials, HandlerConfig


@dataclass(frozen=True)
class JobIO:
    """One job's side of every transfer: its id, limits, deadline and S3 credentials.

    `credentials` is called only when an s3:// location needs them: the job's own
    input.credentials (checked once per job by JobContext), else the worker's BUCKET_*.
    """

    id: str
    config: HandlerConfig
    credentials: Callable[[], BucketCredentials]
    deadline: float  # time.monotonic() by which the job must end
