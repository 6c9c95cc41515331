"""Whisper models: which directory a job's `model` means, and loading one.

A job's `model` is a Whisper name (tiny ... large-v3, turbo, the .en and distil variants) or
`volume://PATH` to a CTranslate2 model directory. A name resolves, in this order, to:

1. `<volume>/models/whisper/<name>/` when it holds a model.bin: a directory the user copied
   there (what faster-whisper's own download of that name contains: model.bin, config.json,
   tokenizer.json, vocabulary); no network needed;
2. faster-whisper's download of the name, kept in `<volume>/.runpod-slim/models/whisper`
   (Hugging Face's cache layout), fetched on first use when it is not there yet.

Loaded models are kept by the handler's ModelCache (handlers.audio.models); each comes with a
lock, so one job at a time uses it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap.suggest import did_you_mean

from ..config import HandlerConfig
from ..errors import JobError
from ..transfer import volume_path

LOG = logging.getLogger("runpod-slim")

MODELS = (
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large-v1",
    "large-v2",
    "large-v3",
    "large-v3-turbo",
    "turbo",
    "distil-large-v2",
    "distil-large-v3",
)
COMPUTE_TYPES = (
    "int8",
    "int8_float16",
    "int8_float32",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)
VOLUME_MODELS = "models/whisper"  # where a user puts a model directory, under the volume


@dataclass(frozen=True)
class ModelSource:
    """Where a Whisper model comes from: a local directory, or a name and its download root."""

    name: str  # as the job gave it
    target: str  # what WhisperModel loads: a directory, or a name to download
    download_root: str | None  # None for a directory (or without a volume: HF's own cache)

    @property
    def is_directory(self) -> bool:
        return self.target != self.name


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A Whisper model in memory, with the lock that lets one job at a time use it."""

    name: str
    model: Any  # whisperx.asr.WhisperModel: faster-whisper's, plus batched generation
    lock: threading.Lock = field(default_factory=threading.Lock)


def cpu_threads() -> int:
    """CTranslate2's threads on the CPU: every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 4


def download_root(config: HandlerConfig) -> Path:
    """Where faster-whisper's downloads of named models are kept: the volume's model cache."""
    return config.volume / ".runpod-slim" / "models" / "whisper"


def resolve(name: str, field: str, config: HandlerConfig) -> ModelSource:
    """Where `name` leads: a directory on the volume, or a name to download (see above)."""
    if name.startswith("volume://"):
        path = volume_path(name, field, config)
        if not (path / "model.bin").is_file():
            raise JobError(
                f"{field}={name!r}: no CTranslate2 model directory at {path} (it needs "
                "model.bin, config.json and tokenizer.json; convert one with "
                "ct2-transformers-converter, or copy a faster-whisper model there)"
            )
        return ModelSource(name, str(path), None)
    if name not in MODELS:
        raise JobError(
            f"{field}={name!r} is not allowed: choose one of {', '.join(MODELS)}"
            f"{did_you_mean(name, list(MODELS))}, or volume://PATH to a CTranslate2 "
            "model directory on the volume"
        )
    if not config.volume.is_dir():
        return ModelSource(name, name, None)
    placed = config.volume / VOLUME_MODELS / name
    if (placed / "model.bin").is_file():
        return ModelSource(name, str(placed.resolve()), None)
    return ModelSource(name, name, str(download_root(config)))


def load(source: ModelSource, compute_type: str, device: str, config: HandlerConfig) -> Any:
    """whisperx's WhisperModel for `source`, downloading a named model on first use."""
    import ctranslate2
    from whisperx.asr import WhisperModel  # faster-whisper's, with batched generation

    supported = sorted(ctranslate2.get_supported_compute_types(device))
    if compute_type not in supported:
        raise JobError(
            f"input.compute_type={compute_type!r} is not supported on this worker's "
            f"{device}: choose one of {', '.join(supported)}"
        )
    root = source.download_root
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
    options = {
        "device": device,
        "compute_type": compute_type,
        "download_root": root,
        "cpu_threads": cpu_threads(),
    }
    if source.is_directory:
        return WhisperModel(source.target, **options)
    try:
        return WhisperModel(source.target, local_files_only=True, **options)
    except Exception:
        LOG.info("audio: downloading Whisper %s into %s", source.name, root)
    try:
        return WhisperModel(source.target, **options)
    except Exception as exc:
        placed = config.volume / VOLUME_MODELS / source.name
        raise JobError(
            f"model {source.name!r} is not on the volume (no model.bin in {placed}, nor a "
            f"download in {root or 'the Hugging Face cache'}) and could not be downloaded from "
            f"huggingface.co ({type(exc).__name__}); allow network access to huggingface.co, "
            f"or copy a CTranslate2 model directory to {placed}"
        ) from None
