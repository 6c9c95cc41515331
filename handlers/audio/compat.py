"""worker-faster_whisper's job schema and output, served by the audio handler beside its own.

RunPod's official speech-to-text worker (runpod-workers/worker-faster_whisper) takes 21 input
fields and answers with `segments`, `detected_language`, `transcription`, `translation`,
`device`, `model` and, when asked, `word_timestamps`. Its clients switch to this worker by
changing the endpoint only, so a job is read as one of two schemas:

- worker-faster_whisper's, unless the job names a field only the whisperx schema has;
- the whisperx schema (handlers.audio.whisperx_job), when it names one of those (align, diarize,
  output_formats, task, ...).

A job naming fields unique to both is refused, naming them: no job is read as the schema it
was not written for. The fields both schemas share (audio, audio_base64, model, language,
initial_prompt, and credentials for an s3:// source) decide nothing, so a job with only those
is a worker-faster_whisper job, as its README's example is.

Decoding options keep faster-whisper's meanings (it is the same engine); the deliberate
differences from the official worker are listed in RUNPOD-SLIM.md ("From worker-faster_whisper").
Pure: no model, no numpy; the unit tests run it without the audio env.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bootstrap.suggest import did_you_mean

from ..errors import JobError
from ..validation import Field, validate
from .subtitles import timestamp

FASTER_WHISPER = "worker-faster_whisper"
WHISPERX = "whisperx"

OFFICIAL_FIELDS = (
    "audio",
    "audio_base64",
    "model",
    "transcription",
    "translate",
    "translation",
    "language",
    "temperature",
    "best_of",
    "beam_size",
    "patience",
    "length_penalty",
    "suppress_tokens",
    "initial_prompt",
    "condition_on_previous_text",
    "temperature_increment_on_fallback",
    "compression_ratio_threshold",
    "logprob_threshold",
    "no_speech_threshold",
    "enable_vad",
    "word_timestamps",
)
# In both schemas with one meaning; `credentials` (an s3:// source's keys) is this worker's.
SHARED_FIELDS = frozenset({"audio", "audio_base64", "model", "language", "initial_prompt"})
TRANSPORT_FIELDS = frozenset({"credentials"})
TRANSCRIPT_FORMATS = ("plain_text", "formatted_text", "srt", "vtt")
# A null here is faster-whisper's "off" (the official worker passes it through); elsewhere a
# null is the field's default.
NULL_MEANS_OFF = (
    "temperature_increment_on_fallback",
    "compression_ratio_threshold",
    "logprob_threshold",
    "no_speech_threshold",
)
MAX_BEAMS = 64


# --- which schema a job is written in ---------------------------------------------------------


def recognise(job_input: object, whisperx_fields: Collection[str]) -> str:
    """FASTER_WHISPER or WHISPERX for this job's fields; refuses a job that mixes the two.

    `whisperx_fields` is every field the whisperx schema knows (shared ones included).
    """
    if not isinstance(job_input, Mapping):
        return FASTER_WHISPER  # its validation says what input must be
    common = SHARED_FIELDS | TRANSPORT_FIELDS
    official_only = [k for k in job_input if k in OFFICIAL_FIELDS and k not in common]
    whisperx_only = [k for k in job_input if k in whisperx_fields and k not in common]
    if official_only and whisperx_only:
        raise JobError(
            f"input mixes worker-faster_whisper fields ({', '.join(sorted(official_only))}) "
            f"with this worker's whisperx fields ({', '.join(sorted(whisperx_only))}), and a "
            "job is read as one schema or the other: send only the fields of one (RUNPOD-SLIM.md"
            ', "From worker-faster_whisper", lists both)'
        )
    schema = WHISPERX if whisperx_only else FASTER_WHISPER
    known = set(whisperx_fields) | set(OFFICIAL_FIELDS) | common
    unknown = sorted(k for k in job_input if k not in known)
    if unknown and not official_only and not whisperx_only:
        # Nothing tells the schema yet: the hint looks in both.
        name = unknown[0]
        raise JobError(
            f"input.{name} is not a known field{did_you_mean(name, sorted(known))}; a job uses "
            f"worker-faster_whisper's fields ({', '.join(sorted(OFFICIAL_FIELDS))}) or this "
            f"worker's whisperx fields ({', '.join(sorted(whisperx_fields))})"
        )
    return schema


# --- the official schema ----------------------------------------------------------------------


def _finite(value: float) -> str | None:
    return None if math.isfinite(value) else "must be a finite number"


def _positive(value: float) -> str | None:
    return None if math.isfinite(value) and value > 0 else "must be a number above 0"


def _transcript_format(value: str) -> str | None:
    if value.replace(" ", "_") in TRANSCRIPT_FORMATS:
        return None
    return (
        f"choose one of {', '.join(TRANSCRIPT_FORMATS)}"
        f"{did_you_mean(value.replace(' ', '_'), list(TRANSCRIPT_FORMATS))}"
    )


def _increment(value: float) -> str | None:
    # A tiny step would make a schedule of millions of temperatures.
    if math.isfinite(value) and (value == 0 or value >= 0.01):
        return None
    return "must be 0 (no fallback) or from 0.01 to 1"


def parse_suppress_tokens(value: str) -> tuple[int, ...] | None:
    """'-1' or '-1,50363' as token ids; '' suppresses none; None when it is not such a list."""
    if not value.strip():
        return ()
    tokens = []
    for item in value.split(","):
        token = item.strip()
        if not re.fullmatch(r"-?[0-9]{1,9}", token) or int(token) < -1:
            return None
        tokens.append(int(token))
    return tuple(tokens)


def _suppress_tokens(value: str) -> str | None:
    if parse_suppress_tokens(value) is None:
        return (
            'write comma-separated token ids, such as "-1" (Whisper\'s non-speech symbols) or '
            '"-1,50363", or "" for none'
        )
    return None


def official_fields(default_model: str = "base") -> dict[str, Field]:
    """worker-faster_whisper's 21 fields with its defaults, and this worker's credentials."""
    return {
        "audio": Field(str, help="an https://, s3:// or volume:// URL of the audio"),
        "audio_base64": Field(str, help="the audio file, base64"),
        "model": Field(str, default=default_model),
        "transcription": Field(str, default="plain_text", check=_transcript_format),
        "translate": Field(bool, default=False),
        "translation": Field(str, default="plain_text", check=_transcript_format),
        "language": Field(str),
        "temperature": Field(float, default=0.0, minimum=0.0, maximum=1.0, check=_finite),
        "best_of": Field(int, default=5, minimum=1, maximum=MAX_BEAMS),
        "beam_size": Field(int, default=5, minimum=1, maximum=MAX_BEAMS),
        "patience": Field(float, default=1.0, maximum=100.0, check=_positive),
        "length_penalty": Field(float, default=0.0, check=_finite),
        "suppress_tokens": Field(str, default="-1", max_length=10_000, check=_suppress_tokens),
        "initial_prompt": Field(str, max_length=2000),
        "condition_on_previous_text": Field(bool, default=True),
        "temperature_increment_on_fallback": Field(
            float, default=0.2, minimum=0.0, maximum=1.0, check=_increment
        ),
        "compression_ratio_threshold": Field(float, default=2.4, minimum=0.0, check=_finite),
        "logprob_threshold": Field(float, default=-1.0, maximum=0.0, check=_finite),
        "no_speech_threshold": Field(float, default=0.6, minimum=0.0, maximum=1.0, check=_finite),
        "enable_vad": Field(bool, default=False),
        "word_timestamps": Field(bool, default=False),
        "credentials": Field(dict, help="endpoint_url, access_key_id, secret_access_key"),
    }


@dataclass(frozen=True)
class DecodeOptions:
    """faster-whisper's WhisperModel.transcribe() options, from the official fields."""

    beam_size: int
    best_of: int
    patience: float
    length_penalty: float
    temperature: tuple[float, ...]
    compression_ratio_threshold: float | None
    log_prob_threshold: float | None
    no_speech_threshold: float | None
    condition_on_previous_text: bool
    initial_prompt: str | None
    suppress_tokens: tuple[int, ...]
    vad_filter: bool

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of WhisperModel.transcribe()."""
        return {
            "beam_size": self.beam_size,
            "best_of": self.best_of,
            "patience": self.patience,
            "length_penalty": self.length_penalty,
            "temperature": list(self.temperature),
            "compression_ratio_threshold": self.compression_ratio_threshold,
            "log_prob_threshold": self.log_prob_threshold,
            "no_speech_threshold": self.no_speech_threshold,
            "condition_on_previous_text": self.condition_on_previous_text,
            "initial_prompt": self.initial_prompt,
            "suppress_tokens": list(self.suppress_tokens),
            "vad_filter": self.vad_filter,
        }


@dataclass(frozen=True)
class FasterWhisperRequest:
    """A checked worker-faster_whisper job."""

    audio: str | None
    audio_base64: str | None
    model: str
    language: str | None
    transcription: str
    translate: bool
    translation: str
    word_timestamps: bool
    options: DecodeOptions


def temperatures(start: float, increment: float | None) -> tuple[float, ...]:
    """The fallback schedule: start, start + increment, ... up to 1.0 (official semantics).

    None or 0 means no fallback: only `start`.
    """
    if not increment:
        return (start,)
    count = math.floor((1.0 + 1e-6 - start) / increment) + 1
    return tuple(round(start + i * increment, 6) for i in range(count))


def read_request(job_input: object, default_model: str = "base") -> FasterWhisperRequest:
    """Check a worker-faster_whisper job; JobError names the first bad field."""
    args = validate(job_input, official_fields(default_model))
    assert isinstance(job_input, Mapping)  # validate refused anything else
    for name in NULL_MEANS_OFF:
        if name in job_input and job_input[name] is None:
            args[name] = None
    if (args["audio"] is None) == (args["audio_base64"] is None):
        raise JobError(
            "give exactly one of input.audio (an https://, s3:// or volume:// URL) and "
            "input.audio_base64"
        )
    suppress = parse_suppress_tokens(args["suppress_tokens"])
    assert suppress is not None  # the field's check refused anything else
    options = DecodeOptions(
        beam_size=args["beam_size"],
        best_of=args["best_of"],
        patience=args["patience"],
        length_penalty=args["length_penalty"],
        temperature=temperatures(args["temperature"], args["temperature_increment_on_fallback"]),
        compression_ratio_threshold=args["compression_ratio_threshold"],
        log_prob_threshold=args["logprob_threshold"],
        no_speech_threshold=args["no_speech_threshold"],
        condition_on_previous_text=args["condition_on_previous_text"],
        initial_prompt=args["initial_prompt"],
        suppress_tokens=suppress,
        vad_filter=args["enable_vad"],
    )
    return FasterWhisperRequest(
        audio=args["audio"],
        audio_base64=args["audio_base64"],
        model=args["model"],
        language=args["language"],
        transcription=args["transcription"].replace(" ", "_"),
        translate=args["translate"],
        translation=args["translation"].replace(" ", "_"),
        word_timestamps=args["word_timestamps"],
        options=options,
    )


# --- the official output ----------------------------------------------------------------------
# Segments are faster_whisper.transcribe.Segment objects (read by attribute).


def segment_json(segment: Any) -> dict[str, Any]:
    """One segment as the official worker returns it (text keeps Whisper's leading space)."""
    return {
        "id": int(segment.id),
        "seek": int(segment.seek),
        "start": float(segment.start),
        "end": float(segment.end),
        "text": str(segment.text),
        "tokens": [int(token) for token in segment.tokens],
        "temperature": None if segment.temperature is None else float(segment.temperature),
        "avg_logprob": float(segment.avg_logprob),
        "compression_ratio": float(segment.compression_ratio),
        "no_speech_prob": float(segment.no_speech_prob),
    }


def words_json(segments: Iterable[Any]) -> list[dict[str, Any]]:
    """Every word of every segment, in order: word, start, end."""
    return [
        {"word": str(word.word), "start": float(word.start), "end": float(word.end)}
        for segment in segments
        for word in segment.words or ()
    ]


def _cue(text: str) -> str:
    return text.strip().replace("-->", "->")  # an arrow in the text would end the timing line


def transcript(form: str, segments: Iterable[Any]) -> str:
    """The segments' text as plain_text, formatted_text (a line each), srt or vtt."""
    items = list(segments)
    if form == "plain_text":
        return " ".join(s.text.lstrip() for s in items)
    if form == "formatted_text":
        return "\n".join(s.text.lstrip() for s in items)
    if form == "srt":
        return "".join(
            f"{i}\n{timestamp(s.start)} --> {timestamp(s.end)}\n{_cue(s.text)}\n\n"
            for i, s in enumerate(items, 1)
        )
    if form == "vtt":
        # The official worker leaves out the WEBVTT header, which makes the file invalid.
        return "WEBVTT\n\n" + "".join(
            f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{_cue(s.text)}\n\n"
            for s in items
        )
    raise ValueError(f"unknown transcript format {form!r}")
