"""A whisperx job: its input, checked into a WhisperxRequest, and its run.

Input: exactly one of `audio` (https://, s3:// or volume:// URL) and `audio_base64`; `model`
(a Whisper size such as tiny.en or large-v3, or volume://PATH to a CTranslate2 model
directory; the default is RUNPOD_SLIM_AUDIO_MODEL), `language` (detected when left out),
`task` (transcribe or translate), `batch_size`, `compute_type` (float16 on a GPU and int8 on
the CPU when left out), `initial_prompt`, `vad_onset` and `vad_offset` (0..1), `align` (word
timings from a wav2vec2 CTC model: `align_model`, a volume:// directory or a Hugging Face
name, else whisperx's default for the language), `diarize` with `min_speakers` and
`max_speakers` (pyannote/speaker-diarization-3.1, a gated model: HF_TOKEN on the endpoint or
`hf_token` in the job, never logged), `output_formats` (json, text, srt, vtt; default json and
text), and `credentials` (for an s3:// source).

Output: `segments` (start, end, text; `words` with start, end, score when aligned; `speaker`
on segments and words when diarized), `text`, `language`, `model`, `duration_s`, and `srt` /
`vtt` when asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bootstrap.suggest import did_you_mean

from ..base import JobContext
from ..errors import JobError
from ..validation import Field, validate
from .alignment import check_align_model
from .decoding import SAMPLE_RATE, decode_job_audio
from .diarization import DIARIZATION_MODEL
from .languages import check_english_only, check_language
from .subtitles import clean_segment, to_srt, to_vtt
from .whisper_models import COMPUTE_TYPES

if TYPE_CHECKING:
    from .handler import AudioHandler

OUTPUT_FORMATS = ("json", "text", "srt", "vtt")
TASKS = ("transcribe", "translate")


def _check_formats(value: list[Any]) -> str | None:
    if not value:
        return f"give at least one of {', '.join(OUTPUT_FORMATS)}"
    for item in value:
        if item not in OUTPUT_FORMATS:
            hint = did_you_mean(item, list(OUTPUT_FORMATS)) if isinstance(item, str) else ""
            return f"{item!r} is not allowed: choose from {', '.join(OUTPUT_FORMATS)}{hint}"
    return None


def whisperx_fields(default_model: str) -> dict[str, Field]:
    """Every field of a whisperx job, with its default and limits."""
    return {
        "audio": Field(str, help="an https://, s3:// or volume:// URL of the audio"),
        "audio_base64": Field(str, help="the audio file, base64"),
        "model": Field(str, default=default_model),
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


WHISPERX_FIELDS = frozenset(whisperx_fields(""))


@dataclass(frozen=True)
class WhisperxRequest:
    """A checked whisperx job."""

    audio: str | None
    audio_base64: str | None
    model: str
    language: str | None
    task: str
    batch_size: int
    compute_type: str | None  # None: the device's default
    initial_prompt: str | None
    vad_onset: float
    vad_offset: float
    align: bool
    align_model: str | None
    diarize: bool
    min_speakers: int | None
    max_speakers: int | None
    hf_token: str | None  # the job's own, else the endpoint's; never logged or returned
    output_formats: tuple[str, ...]

    def __repr__(self) -> str:
        return f"WhisperxRequest(model={self.model!r}, task={self.task!r}, ...)"


def read_whisperx_request(
    job_input: object, default_model: str, endpoint_token: str | None
) -> WhisperxRequest:
    """Check a whisperx job; JobError names the first bad field."""
    args = validate(job_input, whisperx_fields(default_model))
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
    token = args["hf_token"] or endpoint_token
    if args["diarize"] and not token:
        raise JobError(
            f"input.diarize=true needs a Hugging Face token that may read {DIARIZATION_MODEL}:"
            " set HF_TOKEN on the endpoint or pass input.hf_token"
        )
    check_language(args["language"])
    check_align_model(args["align_model"])
    return WhisperxRequest(
        audio=args["audio"],
        audio_base64=args["audio_base64"],
        model=args["model"],
        language=args["language"],
        task=args["task"],
        batch_size=args["batch_size"],
        compute_type=args["compute_type"],
        initial_prompt=args["initial_prompt"],
        vad_onset=args["vad_onset"],
        vad_offset=args["vad_offset"],
        align=args["align"],
        align_model=args["align_model"],
        diarize=args["diarize"],
        min_speakers=low,
        max_speakers=high,
        hf_token=token,
        output_formats=tuple(args["output_formats"]),
    )


def run_whisperx(
    handler: AudioHandler, job: JobContext, request: WhisperxRequest
) -> dict[str, Any]:
    """Transcribe, then align and diarize when asked; the whisperx output. Blocking."""
    import whisperx

    compute_type = request.compute_type or handler.default_compute_type()
    loaded = handler.model(request.model, compute_type)
    english_only = not loaded.model.model.is_multilingual
    check_english_only(not english_only, request.model, request.language)
    audio = decode_job_audio(
        job, request.audio, request.audio_base64, handler.settings.max_duration_s
    )
    duration = len(audio) / SAMPLE_RATE
    job.progress(f"decoded {duration:.1f} s of audio; transcribing")

    pipeline = whisperx.load_model(
        request.model,
        handler.device,
        compute_type=compute_type,
        model=loaded.model,
        vad_model=handler.vad(),
        language="en" if english_only else request.language,
        task=request.task,
        asr_options={"initial_prompt": request.initial_prompt},
        vad_options={"vad_onset": request.vad_onset, "vad_offset": request.vad_offset},
    )
    with loaded.lock:
        result = pipeline.transcribe(audio, batch_size=request.batch_size)
    del pipeline
    language = result["language"]
    job.progress(f"transcribed {len(result['segments'])} segments ({language})")

    if request.align and result["segments"]:
        align_model, metadata = handler.aligner(language, request.align_model)
        with loaded.lock:
            result = whisperx.align(
                result["segments"], align_model, metadata, audio, handler.device
            )
        result["language"] = language
        job.progress("aligned words")
        handler.free()

    if request.diarize:
        diarizer = handler.diarizer(request.hf_token or "")
        with loaded.lock:
            speakers = diarizer(
                audio, min_speakers=request.min_speakers, max_speakers=request.max_speakers
            )
        result = whisperx.assign_word_speakers(speakers, result)
        job.progress("assigned speakers")
        del speakers
        handler.free()
    del audio

    segments = [clean_segment(s) for s in result["segments"]]
    output: dict[str, Any] = {
        "segments": segments,
        "text": " ".join(s["text"] for s in segments if s["text"]),
        "language": language,
        "model": request.model,
        "duration_s": round(duration, 3),
    }
    if "srt" in request.output_formats:
        output["srt"] = to_srt(segments)
    if "vtt" in request.output_formats:
        output["vtt"] = to_vtt(segments)
    return output
