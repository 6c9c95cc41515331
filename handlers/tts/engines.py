"""What a tts engine is, and which engines this build has.

An engine is a class built with the worker's `HandlerConfig` (its volume, where its weights
are) that answers what it lacks, which voices it has, and loads one of them. A voice speaks one
piece of text at a time into float32 mono samples at its own sample rate; the handler does the
rest (sentences, resampling, encoding, streaming, delivery), the same for every engine.

Engines are imported only when a worker or a job first uses one: a Piper-only worker never
imports torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, cast

from bootstrap.settings import did_you_mean

from ..config import HandlerConfig
from ..errors import JobError

# name -> "module:Class", imported on first use.
ENGINES: dict[str, str] = {
    "piper": "handlers.tts.piper:PiperEngine",
    "kokoro": "handlers.tts.kokoro:KokoroEngine",
    "qwen": "handlers.tts.qwen:QwenEngine",
}


class Voice(Protocol):
    """A loaded voice: speaks one piece of text at a time."""

    name: str
    sample_rate: int

    def synthesize(self, text: str, speed: float) -> Any:
        """`text` spoken at `speed` (1.0 normal): float32 mono numpy samples in -1..1."""


class Engine(Protocol):
    """A way to speak: its voices, what it lacks, and loading (or cloning) one voice."""

    name: str
    default_voice: str
    clones: bool  # whether clone() can make a voice from a reference clip

    def missing(self) -> str | None:
        """What this worker lacks to run the engine, as advice; None when it can run."""

    def voices(self) -> dict[str, str]:
        """Voice name -> where it comes from (the keys are what a job may ask for)."""

    def where_to_add(self) -> str:
        """How to add a voice, as the end of a sentence ("put NAME.pt under ...")."""

    def load(self, voice: str) -> Voice:
        """The named voice (one of voices()), loaded."""

    def clone(self, reference: Path, transcript: str | None) -> Voice:
        """A voice that sounds like the speaker in `reference` (only when `clones`)."""


def create(name: str, config: HandlerConfig) -> Engine:
    """The engine registered under `name`, its module imported now.

    A JobError when the name is unknown or this build lacks its module: the message names the
    engines there are.
    """
    target = ENGINES.get(name)
    if target is None:
        choices = sorted(ENGINES)
        raise JobError(
            f"engine {name!r} is not one of this worker's: choose one of "
            f"{', '.join(choices)}{did_you_mean(name, choices)}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the engine's module is there and one of its imports is not: a real bug
        raise JobError(f"engine {name!r} is not in this build of the worker") from None
    return cast(Engine, getattr(module, class_name)(config))
