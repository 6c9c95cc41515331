"""HANDLER_TYPE=storage: files between URLs, S3-compatible buckets and the network volume.

The package's parts: `fields` (the actions and what each takes), `settings` (the worker's own
storage settings, read before any install), `handler` (the lifecycle and the actions).
"""

from __future__ import annotations

from .fields import ACTIONS, FIELDS, MAX_BASE64_CHARS
from .handler import StorageHandler

__all__ = ["ACTIONS", "FIELDS", "MAX_BASE64_CHARS", "StorageHandler"]
