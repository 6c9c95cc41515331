"""Reading one setting's value from the environment: the forms every handler's settings share.

Standard library only: settings are read before any install. A bad value is a SettingsError
naming the variable, the value (a pasted blob cut short) and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from bootstrap.errors import SettingsError

_SHOWN = 60


def shown(raw: str) -> str:
    """A setting's value as a refusal echoes it."""
    return raw if len(raw) <= _SHOWN else raw[: _SHOWN - 3] + "..."


def positive_whole(environ: Mapping[str, str], name: str, default: int) -> int:
    """A whole number > 0 (ASCII digits only: int() would take other scripts' digits)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) <= 0:
        raise SettingsError(name, shown(raw), "a whole number > 0")
    return int(raw)


def megabytes(environ: Mapping[str, str], name: str, default: float) -> float:
    """A finite number of megabytes > 0."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise SettingsError(name, shown(raw), "a number of megabytes > 0")
    return value


def flag(environ: Mapping[str, str], name: str) -> bool:
    """On or off; unset is off."""
    raw = environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(name, shown(environ[name].strip()), "use 1/true/yes/on or 0/false/no/off")
