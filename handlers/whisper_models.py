"""Whisper models for the audio handler: which directory a name means, loaded once, kept.

A job's `model` is a Whisper name (tiny ... large-v3, turbo, the .en and distil variants) or
`volume://PATH` to a CTranslate2 model directory. A name resolves, in this order, to:

1. `<volume>/models/whisper/<name>/` when it holds a model.bin: a directory the user copied
   there (what faster-whisper's own download of that name contains: model.bin, config.json,
   tokenizer.json, vocabulary); no network needed;
2. faster-whisper's download of the name, kept in `<volume>/.runpod-slim/models/whisper`
   (Hugging Face's cache layout), fetched on first use when it is not there yet.

Loaded models stay in memory, at most RUNPOD_SLIM_AUDIO_MAX_MODELS (the least recently used
leaves); each has a lock, so one job at a time uses it.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.settings import did_you_mean

from .config import HandlerConfig
from .errors import JobError
from .io import volume_path

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


@dataclass
class LoadedModel:
    """A Whisper model in memory, with the lock that lets one job at a time use it."""

    name: str
    model: Any  # whisperx.asr.WhisperModel: faster-whisper's, plus batched generation
    lock: threading.Lock


def cpu_threads() -> int:
    """CTranslate2's threads on the CPU: every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 4


class WhisperModels:
    """Resolves model names and keeps the loaded models (least recently used leaves first)."""

    def __init__(self, config: HandlerConfig, device: Any) -> None:
        self.config = config
        self._device = device  # a callable: the device is known only once torch is imported
        self.loaded: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def download_root(self) -> Path:
        return self.config.volume / ".runpod-slim" / "models" / "whisper"

    def resolve(self, name: str, field: str) -> tuple[str, str | None]:
        """(what WhisperModel loads, the download root): a directory, or a name to download."""
        if name.startswith("volume://"):
            path = volume_path(name, field, self.config)
            if not (path / "model.bin").is_file():
                raise JobError(
                    f"{field}={name!r}: no CTranslate2 model directory at {path} (it needs "
                    "model.bin, config.json and tokenizer.json; convert one with "
                    "ct2-transformers-converter, or copy a faster-whisper model there)"
                )
            return str(path), None
        if name not in MODELS:
            raise JobError(
                f"{field}={name!r} is not allowed: choose one of {', '.join(MODELS)}"
                f"{did_you_mean(name, list(MODELS))}, or volume://PATH to a CTranslate2 "
                "model directory on the volume"
            )
        if not self.config.volume.is_dir():
            return name, None
        placed = self.config.volume / VOLUME_MODELS / name
        if (placed / "model.bin").is_file():
            return str(placed.resolve()), None
        return name, str(self.download_root)

    def get(self, name: str, compute_type: str, field: str = "input.model") -> LoadedModel:
        """The model, loaded once and kept; the least recently used leaves a full cache."""
        target, root = self.resolve(name, field)
        key = (target, compute_type)
        with self._lock:
            if key in self.loaded:
                self.loaded.move_to_end(key)
                return self.loaded[key]
        loaded = LoadedModel(name, self._load(name, target, root, compute_type), threading.Lock())
        with self._lock:
            self.loaded[key] = loaded
            self.loaded.move_to_end(key)
            while len(self.loaded) > self.config.audio_max_models:
                evicted, _ = self.loaded.popitem(last=False)
                LOG.info("audio: model %s leaves memory (RUNPOD_SLIM_AUDIO_MAX_MODELS)", evicted[0])
            gc.collect()
            return loaded

    def _load(self, name: str, target: str, root: str | None, compute_type: str) -> Any:
        import ctranslate2
        from whisperx.asr import WhisperModel  # faster-whisper's, with batched generation

        device = self._device()
        supported = sorted(ctranslate2.get_supported_compute_types(device))
        if compute_type not in supported:
            raise JobError(
                f"input.compute_type={compute_type!r} is not supported on this worker's "
                f"{device}: choose one of {', '.join(supported)}"
            )
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
        options = {
            "device": device,
            "compute_type": compute_type,
            "download_root": root,
            "cpu_threads": cpu_threads(),
        }
        if target != name:  # a local directory
            return WhisperModel(target, **options)
        try:
            return WhisperModel(target, local_files_only=True, **options)
        except Exception:
            LOG.info("audio: downloading Whisper %s into %s", name, root)
        try:
            return WhisperModel(target, **options)
        except Exception as exc:
            placed = self.config.volume / VOLUME_MODELS / name
            raise JobError(
                f"model {name!r} is not on the volume (no model.bin in {placed}, nor a download "
                f"in {root or 'the Hugging Face cache'}) and could not be downloaded from "
                f"huggingface.co ({type(exc).__name__}); allow network access to huggingface.co, "
                f"or copy a CTranslate2 model directory to {placed}"
            ) from None
