"""Word alignment: which wav2vec2 CTC model a job's `align_model` means, and loading it.

`align_model` is a Hugging Face model name or a `volume://` directory (save_pretrained
output); never a path on the worker's disk, which from_pretrained would load as well. Left
out, whisperx's default model for the language is used.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ..config import HandlerConfig
from ..errors import JobError
from ..transfer import volume_path

Aligner = tuple[Any, dict[str, Any]]  # whisperx's alignment model and its metadata

# A model name as Hugging Face spells one ("org/name", or a torchaudio pipeline's NAME): never a
# path, which from_pretrained would load from the worker's own disk.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")


def check_align_model(name: str | None) -> None:
    """A model name or a volume:// directory; never a path on the worker's disk."""
    if name is None or name.startswith("volume://"):
        return
    named = _MODEL_NAME.fullmatch(name) and ".." not in name and not os.path.lexists(name)
    if not named:
        raise JobError(
            f"input.align_model={name[:100]!r} is not allowed: give a Hugging Face model name "
            '(such as "facebook/wav2vec2-base-960h") or a volume:// directory of a wav2vec2 '
            "CTC model"
        )


def align_source(name: str | None, config: HandlerConfig) -> str | None:
    """What whisperx loads for `name`: the volume directory's path, the name, or None."""
    if name is None or not name.startswith("volume://"):
        return name
    path = volume_path(name, "input.align_model", config)
    if not (path / "config.json").is_file():
        raise JobError(
            f"input.align_model={name!r}: no wav2vec2 CTC model directory at {path} "
            "(save_pretrained output: config.json, the weights and the processor files)"
        )
    return str(path)


def load_aligner(language: str, name: str | None, source: str | None, device: str) -> Aligner:
    """whisperx's alignment model for `language` from `source` (see align_source)."""
    import whisperx

    try:
        loaded: Aligner = whisperx.load_align_model(language, device, model_name=source)
    except Exception as exc:
        what = f"input.align_model={name!r}" if name else f"language {language!r}"
        raise JobError(
            f"no alignment model for {what} could be loaded ({str(exc)[:200]}); put a "
            "wav2vec2 CTC model directory on the volume and "
            'pass align_model="volume://models/align/NAME", or allow network access to '
            "huggingface.co"
        ) from None
    return loaded
