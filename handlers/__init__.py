"""The handler registry: name -> "module:Class", imported only when chosen.

Heavy imports (torch, boto3, av) live inside the handler modules, so choosing one handler
never pays for another.
"""

from __future__ import annotations

import importlib

from bootstrap.settings import did_you_mean

from .base import Handler

REGISTRY: dict[str, str] = {
    "audio": "handlers.audio:AudioHandler",
    "storage": "handlers.storage:StorageHandler",
    "tts": "handlers.tts:TTSHandler",
    "video": "handlers.video:VideoHandler",
}


class UnknownHandlerError(LookupError):
    """HANDLER_TYPE names no handler in this build."""


def load(name: str) -> type[Handler]:
    """The handler class registered under `name`, imported now."""
    target = REGISTRY.get(name)
    if target is None:
        choices = sorted(REGISTRY)
        raise UnknownHandlerError(
            f"HANDLER_TYPE={name!r} names no handler in this build{did_you_mean(name, choices)}; "
            f"choose one of {', '.join(choices)}"
        )
    module_name, _, class_name = target.partition(":")
    handler: type[Handler] = getattr(importlib.import_module(module_name), class_name)
    return handler
