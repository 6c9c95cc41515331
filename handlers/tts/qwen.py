"""The Qwen engine: Qwen3-TTS (the `qwen-tts` package) on the torch stack.

Two kinds of model, each a Hugging Face model folder (config.json, model.safetensors, the
text tokenizer's files, generation_config.json and speech_tokenizer/):

  voices   a CustomVoice model: its named speakers are the voices (the default is `ryan`).
           <volume>/models/qwen3-tts/Qwen3-TTS-12Hz-0.6B-CustomVoice/, or any folder there
           whose config.json says "tts_model_type": "custom_voice".
  cloning  a Base model: clone() makes a voice from a short reference clip (and, when given,
           its transcript). <volume>/models/qwen3-tts/Qwen3-TTS-12Hz-0.6B-Base/, or any
           folder there whose config.json says "tts_model_type": "base".

A model that is not on the volume is downloaded into it on first use from the Hub (HF_TOKEN
from the environment; handlers.tts.hub), unless downloads are off: then the error says which
folder to put where.

On a GPU of compute capability 8.0 or newer with flash_attn importable the model runs with
flash_attention_2 in bfloat16; other GPUs get SDPA in float16 (bfloat16 needs 8.0), the CPU
SDPA in float32. Each model is loaded once per worker, under one lock.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import volume
from ..config import HandlerConfig
from ..errors import JobError
from . import hub

Samples = Any  # a float32 numpy array, mono, in -1..1

FOLDER = ("models", "qwen3-tts")
VOICES_REPO = "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"
CLONE_REPO = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
DEFAULT_VOICE = "ryan"
KINDS = {"custom_voice": VOICES_REPO, "base": CLONE_REPO}
# Codec tokens one piece of text may make: the 12 Hz codec makes 12.5 a second and speech is
# about 15 characters a second, so this is several times what real speech needs; it stops a
# model that never says "end" (a bad checkpoint, random test weights) from running forever.
TOKENS_PER_CHAR = 3
MIN_TOKENS = 60
FLASH_ATTN_CAPABILITY = (8, 0)  # flash-attn 2 and bfloat16 need Ampere or newer


@dataclass(frozen=True)
class Placement:
    """Where and how a model runs: device, dtype name (torch attribute) and attention."""

    device: str
    dtype: str
    attention: str


def placement(cuda: bool, capability: tuple[int, int] | None, flash_attn: bool) -> Placement:
    """The placement for this machine: pure, so every branch is tested without a GPU."""
    if not cuda:
        return Placement("cpu", "float32", "sdpa")
    modern = capability is not None and capability >= FLASH_ATTN_CAPABILITY
    if modern:
        return Placement("cuda:0", "bfloat16", "flash_attention_2" if flash_attn else "sdpa")
    return Placement("cuda:0", "float16", "sdpa")


def machine_placement() -> Placement:
    """The placement torch sees here (imports torch)."""
    import torch

    cuda = torch.cuda.is_available()
    capability = None
    if cuda:
        major, minor = torch.cuda.get_device_capability(0)
        capability = (int(major), int(minor))
    flash = importlib.util.find_spec("flash_attn") is not None
    return placement(cuda, capability, flash)


def max_tokens(text: str) -> int:
    """The codec-token budget of one piece of text."""
    return MIN_TOKENS + TOKENS_PER_CHAR * len(text)


class QwenEngine:
    """Qwen3-TTS: named speakers from a CustomVoice model, cloning with a Base model."""

    name = "qwen"
    default_voice = DEFAULT_VOICE
    clones = True

    def __init__(
        self,
        config: HandlerConfig,
        settings: object | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.environ = os.environ if environ is None else environ
        self.directory = config.volume.joinpath(*FOLDER)
        self._models: dict[str, Loaded] = {}
        self._lock = threading.Lock()

    # --- what is there -----------------------------------------------------------------------

    def _folders(self) -> dict[str, Path]:
        """kind -> the model folder on the volume (the default repo's name wins a tie)."""
        found: dict[str, Path] = {}
        if not self.directory.is_dir():
            return found
        for folder in sorted(self.directory.iterdir(), key=_default_first):
            kind = _kind_of(self.config, folder)
            if kind is not None and kind not in found:
                found[kind] = folder
        return found

    def _advice(self, kind: str) -> str:
        repo = KINDS[kind]
        return (
            f"put the model folder of {repo} (config.json, model.safetensors, the tokenizer "
            f"files and speech_tokenizer/) at {self.directory / repo.split('/')[-1]}"
        )

    def missing(self) -> str | None:
        lacks = []
        package = importlib.util.find_spec("qwen_tts") is not None
        if not package:
            lacks.append(
                "the pip package qwen-tts is not in this worker's tts env (set "
                "RUNPOD_SLIM_TTS_ENGINE=kokoro or qwen: such a worker installs the torch env)"
            )
        # With downloads on, the worker fetches the model on first use.
        if "custom_voice" not in self._folders() and (hub.offline(self.environ) or not package):
            lacks.append(
                f"no CustomVoice model in {self.directory}: {self._advice('custom_voice')}"
            )
        if not lacks:
            return None
        return "engine 'qwen' cannot run on this worker: " + "; ".join(lacks)

    def voices(self) -> dict[str, str]:
        folder = self._folders().get("custom_voice")
        if folder is None:
            return {DEFAULT_VOICE: f"{VOICES_REPO}, downloaded on first use"}
        speakers = _read_config(folder).get("talker_config", {}).get("spk_id") or {}
        return {str(name).lower(): str(folder) for name in speakers}

    def where_to_add(self) -> str:
        return (
            "use a CustomVoice model with that speaker, or give a reference clip to clone "
            f"a voice (a Base model under {self.directory}/)"
        )

    # --- loading -----------------------------------------------------------------------------

    def _model(self, kind: str) -> Loaded:
        """The model of `kind`, loaded once (downloaded first when it is not on the volume)."""
        with self._lock:
            if kind in self._models:
                return self._models[kind]
            folder = self._folders().get(kind)
            if folder is None:
                if hub.offline(self.environ):
                    raise JobError(f"engine 'qwen' has no model: {self._advice(kind)}")
                repo = KINDS[kind]
                target = self.directory / repo.split("/")[-1]
                advice = f"engine 'qwen' has no model: {self._advice(kind)}"
                hub.download(repo, ["*"], target, self.environ, advice=advice)
                folder = target
            model = _load(folder, machine_placement())
            self._models[kind] = Loaded(model, _rate(model), threading.Lock())
            return self._models[kind]

    def load(self, voice: str) -> QwenVoice:
        return QwenVoice(voice, self._model("custom_voice"))

    def clone(self, reference: Path, transcript: str | None) -> QwenClonedVoice:
        """A voice from `reference` (any format soundfile reads); ICL when `transcript` is given."""
        import numpy as np
        import soundfile

        loaded = self._model("base")
        try:
            samples, rate = soundfile.read(str(reference), dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as exc:  # soundfile's LibsndfileError is a RuntimeError
            raise JobError(
                "the reference clip could not be read as audio: give a WAV, FLAC, OGG or MP3 "
                "file of a few seconds of one speaker"
            ) from exc
        if len(samples) == 0:
            raise JobError("the reference clip holds no audio: give a few seconds of speech")
        mono = np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32)
        with loaded.lock:
            prompt = loaded.model.create_voice_clone_prompt(
                ref_audio=(mono, int(rate)),
                ref_text=transcript,
                x_vector_only_mode=transcript is None,
            )
        return QwenClonedVoice(loaded, prompt)


@dataclass(frozen=True)
class Loaded:
    """A loaded Qwen3TTSModel, its output rate, and the lock its generations take in turn."""

    model: Any
    sample_rate: int
    lock: Any  # threading.Lock: the voices of one model share its weights and its cache


class QwenVoice:
    """One named speaker of a CustomVoice model."""

    def __init__(self, name: str, loaded: Loaded) -> None:
        self.name = name
        self.loaded = loaded
        self.sample_rate = loaded.sample_rate

    def synthesize(self, text: str, speed: float) -> Samples:
        with self.loaded.lock:
            wavs, rate = self.loaded.model.generate_custom_voice(
                text=text, speaker=self.name, language="auto", max_new_tokens=max_tokens(text)
            )
        return _finish(wavs, rate, self.sample_rate, speed)


class QwenClonedVoice:
    """A voice cloned from a reference clip by a Base model."""

    name = "clone"

    def __init__(self, loaded: Loaded, prompt: Any) -> None:
        self.loaded = loaded
        self.prompt = prompt
        self.sample_rate = loaded.sample_rate

    def synthesize(self, text: str, speed: float) -> Samples:
        with self.loaded.lock:
            wavs, rate = self.loaded.model.generate_voice_clone(
                text=text,
                language="auto",
                voice_clone_prompt=self.prompt,
                max_new_tokens=max_tokens(text),
            )
        return _finish(wavs, rate, self.sample_rate, speed)


def _finish(wavs: list[Any], rate: int, expected: int, speed: float) -> Samples:
    """One float32 mono array; speed applied by time-stretching (the model has no speed)."""
    import numpy as np

    if int(rate) != expected:
        raise JobError(f"engine 'qwen' made audio at {rate} Hz where its model says {expected}")
    samples = np.asarray(wavs[0], dtype=np.float32).reshape(-1)
    if speed != 1.0 and len(samples) > 0:
        librosa = importlib.import_module("librosa")  # a qwen-tts dependency, untyped
        # A phase vocoder keeps the pitch while it changes the tempo.
        samples = librosa.effects.time_stretch(samples, rate=speed).astype(np.float32)
    return samples


def _rate(model: Any) -> int:
    """The sample rate of the speech tokenizer's output."""
    return int(model.model.speech_tokenizer.get_output_sample_rate())


def _load(folder: Path, where: Placement) -> Any:
    """qwen_tts.Qwen3TTSModel from `folder`, on the placement's device, dtype and attention."""
    import torch

    qwen_tts = importlib.import_module("qwen_tts")
    try:
        return qwen_tts.Qwen3TTSModel.from_pretrained(
            str(folder),
            device_map=where.device,
            dtype=getattr(torch, where.dtype),
            attn_implementation=where.attention,
            local_files_only=True,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise JobError(
            f"engine 'qwen' could not load the model in {folder}: it is incomplete or not a "
            f"Qwen3-TTS model ({_first_line(exc)}); put the whole model folder there again"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or ["no reason given"])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def _default_first(folder: Path) -> tuple[bool, str]:
    return (folder.name not in {repo.split("/")[-1] for repo in KINDS.values()}, folder.name)


def _kind_of(config: HandlerConfig, folder: Path) -> str | None:
    """The model kind a folder holds, from its config.json; None for anything else."""
    names = {path.name for path in volume.files_in(config, *FOLDER, folder.name)}
    if hub.MARKER not in names:
        return None
    kind = _read_config(folder).get("tts_model_type")
    return kind if kind in KINDS else None


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        loaded = json.loads((folder / hub.MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
