"""The Kokoro engine: Kokoro-82M (torch), on the GPU when there is one.

Weights under <volume>/models/kokoro/: config.json, kokoro-v1_0.pth and voices/NAME.pt (the
default voice is af_heart); the pip package `kokoro` must be in the tts env. When the package
or a file is missing, a job says exactly what to put where.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import volume
from ..config import HandlerConfig
from ..errors import JobError
from .audio import Samples
from .engines import Voice

KOKORO_DEFAULT_VOICE = "af_heart"
KOKORO_REPO = "hexgrad/Kokoro-82M"
KOKORO_WEIGHTS = ("config.json", "kokoro-v1_0.pth")
KOKORO_RATE = 24_000


class KokoroEngine:
    """Kokoro-82M (torch), weights from the volume; the GPU when there is one."""

    name = "kokoro"
    default_voice = KOKORO_DEFAULT_VOICE
    clones = False

    def __init__(self, config: HandlerConfig) -> None:
        self.config = config
        self.directory = config.volume / "models" / "kokoro"
        self._model: Any = None
        self._pipelines: dict[str, Any] = {}
        self._lock = threading.Lock()

    def missing(self) -> str | None:
        lacks = []
        if importlib.util.find_spec("kokoro") is None:
            lacks.append(
                "the pip package kokoro is not in this worker's tts env: add it to "
                "bootstrap/requirements/tts.in and run scripts/lock-deps.sh tts"
            )
        present = {path.name for path in volume.files_in(self.config, "models", "kokoro")}
        absent = [name for name in KOKORO_WEIGHTS if name not in present]
        if absent:
            lacks.append(
                f"no {' or '.join(absent)} in {self.directory}: put config.json and "
                f"kokoro-v1_0.pth from {KOKORO_REPO} there"
            )
        if not self.voices():
            lacks.append(
                f"no voices in {self.directory / 'voices'}: put each voice there as NAME.pt "
                f"(such as voices/{KOKORO_DEFAULT_VOICE}.pt from {KOKORO_REPO})"
            )
        if not lacks:
            return None
        return "engine 'kokoro' cannot run on this worker: " + "; ".join(lacks)

    def voices(self) -> dict[str, str]:
        found = volume.files_in(self.config, "models", "kokoro", "voices")
        return {path.stem: str(path) for path in found if path.suffix == ".pt"}

    def where_to_add(self) -> str:
        return f"put NAME.pt under {self.directory / 'voices'}/"

    def load(self, voice: str) -> Voice:
        import torch
        from kokoro import KModel, KPipeline

        with self._lock:
            if self._model is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
                self._model = (
                    KModel(
                        repo_id=KOKORO_REPO,
                        config=str(self.directory / "config.json"),
                        model=str(self.directory / "kokoro-v1_0.pth"),
                    )
                    .to(device)
                    .eval()
                )
            # The voice's first letter is its language (a: American English, b: British, ...).
            language = voice[0]
            if language not in self._pipelines:
                self._pipelines[language] = KPipeline(
                    lang_code=language, repo_id=KOKORO_REPO, model=self._model
                )
        return KokoroVoice(voice, self.voices()[voice], self._pipelines[language])

    def clone(self, reference: Path, transcript: str | None) -> Voice:
        raise JobError("engine 'kokoro' cannot clone a voice from a reference clip")


@dataclass
class KokoroVoice:
    """One Kokoro voice (a style tensor file) spoken through its language's pipeline."""

    name: str
    path: str
    pipeline: Any
    sample_rate: int = KOKORO_RATE

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def synthesize(self, text: str, speed: float) -> Samples:
        import numpy as np
        import torch

        with self.lock, torch.inference_mode():
            parts = [
                result.audio.detach().cpu().numpy()
                for result in self.pipeline(text, voice=self.path, speed=speed, split_pattern=None)
                if result.audio is not None
            ]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
