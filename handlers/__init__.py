"""The handler registry: the catalog's name -> "module:Class", imported only when chosen.

The set of handlers is bootstrap/catalog.py's; this module only imports the chosen one. Heavy
imports (torch, boto3, av) live inside the handler modules, so choosing one handler never pays
for another.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from bootstrap import catalog
from bootstrap.suggest import did_you_mean

from .base import Handler


def registry() -> dict[str, str]:
    """Every handler of this build: name -> "module:Class" (read from the catalog now)."""
    return {name: entry.entry_point for name, entry in catalog.HANDLERS.items()}


class UnknownHandlerError(LookupError):
    """HANDLER_TYPE names no handler in this build."""


def load(name: str) -> type[Handler]:
    """The handler class registered under `name`, imported now."""
    target = registry().get(name)
    if target is None:
        choices = sorted(registry())
        raise UnknownHandlerError(
            f"HANDLER_TYPE={name!r} names no handler in this build{did_you_mean(name, choices)}; "
            f"choose one of {', '.join(choices)}"
        )
    module_name, _, class_name = target.partition(":")
    handler: type[Handler] = getattr(importlib.import_module(module_name), class_name)
    return handler


def load_own_settings(name: str, environ: Mapping[str, str]) -> object | None:
    """The handler's own settings: its catalog settings module's `load(environ)`, or None.

    Those modules are standard library only, so a worker calls this before it installs
    anything; a bad value raises bootstrap.errors.SettingsError naming the variable.
    """
    module = catalog.HANDLERS[name].settings_module
    if module is None:
        return None
    settings: object = importlib.import_module(module).load(environ)
    return settings
