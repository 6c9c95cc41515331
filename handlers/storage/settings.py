"""The storage handler's own settings, read once from an environment mapping passed in.

Standard library only: the worker checks them before it installs anything, and only a storage
worker reads them, so a bad value here never stops another handler's worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bootstrap.errors import SettingsError

from .fields import MAX_EXPIRES_S

EXPIRES_S = "RUNPOD_SLIM_STORAGE_EXPIRES_S"
DEFAULT_EXPIRES_S = 3600


@dataclass(frozen=True)
class StorageSettings:
    """What a storage job gets when it does not say."""

    # How long the presigned URLs a copy or presign returns stay valid, in seconds.
    expires_s: int = DEFAULT_EXPIRES_S


def load(environ: Mapping[str, str]) -> StorageSettings:
    """The storage settings in `environ`; a bad value raises SettingsError naming it."""
    raw = environ.get(EXPIRES_S, "").strip()
    if not raw:
        return StorageSettings()
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_EXPIRES_S):
        shown = raw if len(raw) <= 60 else raw[:57] + "..."
        raise SettingsError(
            EXPIRES_S, shown, f"a whole number of seconds from 1 to {MAX_EXPIRES_S} (7 days)"
        )
    return StorageSettings(expires_s=int(raw))
