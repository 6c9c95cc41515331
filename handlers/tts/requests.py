"""The request shapes a tts job may come in, read into one typed request.

Three shapes, told apart by the field that holds the words (exactly one of them):

  worker   {"text", "voice", "speed", "format", "sample_rate", "engine"}: this worker's own
  openai   {"input", "model", "voice", "response_format", "speed"}: OpenAI's speech API
  runpod   {"prompt", "voice", "voice_url", "format"}: RunPod's public tts endpoints

Every shape also takes `stream`, `destination` and `credentials`. A field of another shape is
refused with a sentence naming both, never silently ignored.

OpenAI's `model` may name an engine, or one of OpenAI's models (tts-1, tts-1-hd,
gpt-4o-mini-tts), which means this worker's engine. OpenAI's voice names (alloy, echo, fable,
onyx, nova, shimmer, ...) are kept as asked: the handler maps them onto the engine's voices
(see `voice_for_openai`). OpenAI's audio is 24 kHz: the openai shape is made at 24 kHz, which
matters for `pcm` (raw 16-bit little-endian samples, no header).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bootstrap.settings import did_you_mean

from ..errors import JobError
from ..validation import Field, validate
from ..volume import shorten
from .audio import FORMATS, SAMPLE_RATES
from .settings import ENGINE_CHOICES, TTSSettings
from .text import speakable

TEXT_FIELDS = {"text": "worker", "input": "openai", "prompt": "runpod"}
SHAPE_NAMES = {
    "worker": "this worker's own shape",
    "openai": "OpenAI's speech shape",
    "runpod": "RunPod's tts endpoint shape",
}
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
OPENAI_RATE = 24_000  # OpenAI's speech is 24 kHz; a pcm client assumes it
# OpenAI's voices. Engines name theirs differently; the handler maps these (voice_for_openai).
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "cedar",
    "coral",
    "echo",
    "fable",
    "marin",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)
# libsndfile, the encoder, has no AAC: asked for, it is refused with this reason.
UNSUPPORTED_FORMATS = {"aac": "its encoder, libsndfile, writes no AAC"}


@dataclass(frozen=True)
class SpeechRequest:
    """One tts job, whatever shape it came in."""

    shape: str  # worker, openai or runpod
    text: str
    text_field: str  # the field the words came in, as errors name it ("input.prompt")
    engine: str
    voice: str | None  # None: the engine's default
    openai_voice: bool  # the voice is one of OpenAI's names: map it onto the engine's voices
    voice_url: str | None  # a reference clip to clone the voice from (runpod shape)
    speed: float
    format: str  # what the caller asked for: wav, mp3, ogg, flac, opus or pcm
    sample_rate: int | None  # None: the voice's own (or the next Opus rate)
    stream: bool
    destination: str | None


def _common() -> dict[str, Field]:
    return {
        "stream": Field(bool, default=False, help="true: a chunk per sentence, as spoken"),
        "destination": Field(str, help="s3://bucket/key or volume://path"),
        "credentials": Field(
            dict, secret=True, help="endpoint_url, access_key_id, secret_access_key"
        ),
    }


def _text(settings: TTSSettings) -> Field:
    return Field(
        str,
        required=True,
        max_length=settings.max_chars,
        check=lambda text: None if speakable(text) else "no letters or digits to speak",
        help="the words to speak",
    )


def _voice() -> Field:
    return Field(str, max_length=200, help="a voice of the engine; its default when left out")


def _speed() -> Field:
    return Field(float, default=1.0, minimum=0.5, maximum=2.0)


def shape_fields(settings: TTSSettings) -> dict[str, dict[str, Field]]:
    """Each shape's fields, as `validate` takes them."""
    common = _common()
    return {
        "worker": {
            "text": _text(settings),
            "voice": _voice(),
            "speed": _speed(),
            "format": Field(str, default="wav", choices=FORMATS),
            "sample_rate": Field(int, choices=SAMPLE_RATES),
            "engine": Field(str, default=settings.engine, choices=ENGINE_CHOICES),
            **common,
        },
        "openai": {
            "input": _text(settings),
            "model": Field(str, max_length=200, help="an engine or an OpenAI speech model"),
            "voice": _voice(),
            "speed": _speed(),
            "response_format": Field(str, default="mp3", max_length=200),
            **common,
        },
        "runpod": {
            "prompt": _text(settings),
            "voice": _voice(),
            "voice_url": Field(str, max_length=4096, help="a reference clip to clone"),
            "format": Field(str, default="wav", choices=FORMATS),
            **common,
        },
    }


def all_fields(settings: TTSSettings) -> dict[str, Field]:
    """Every field any shape takes (for tools that list or fuzz a handler's fields)."""
    merged: dict[str, Field] = {}
    for fields in shape_fields(settings).values():
        for name, field in fields.items():
            merged.setdefault(name, field)
    return merged


def parse(job_input: Mapping[str, Any], settings: TTSSettings) -> SpeechRequest:
    """The job's input as one request; a JobError with one sentence when it is not one."""
    if not isinstance(job_input, Mapping):
        validate(job_input, {})  # says what the input should be
    given = [name for name in TEXT_FIELDS if name in job_input]
    if len(given) > 1:
        names = " and ".join(f"input.{name}" for name in given)
        raise JobError(
            f"{names} were given together: give the words in exactly one of input.text, "
            "input.input (OpenAI's shape) or input.prompt (RunPod's shape)"
        )
    if not given:
        raise JobError(
            "input.text is required: the words to speak (OpenAI's shape gives them as "
            "input.input, RunPod's as input.prompt)"
        )
    text_field = given[0]
    shape = TEXT_FIELDS[text_field]
    fields = shape_fields(settings)
    _refuse_other_shapes(job_input, shape, text_field, fields)
    args = validate(dict(job_input), fields[shape])
    if shape == "openai":
        return _openai(args, settings)
    if shape == "runpod":
        if args["voice"] is not None and args["voice_url"] is not None:
            raise JobError(
                "input.voice and input.voice_url were given together: give a voice by name or a "
                "reference clip to clone, not both"
            )
        return _request(args, "runpod", "prompt", settings.engine, voice_url=args["voice_url"])
    return _request(
        args, "worker", "text", args["engine"], sample_rate=args["sample_rate"], fmt=args["format"]
    )


def _request(
    args: dict[str, Any],
    shape: str,
    text_field: str,
    engine: str,
    *,
    voice_url: str | None = None,
    sample_rate: int | None = None,
    fmt: str | None = None,
    openai_voice: bool = False,
) -> SpeechRequest:
    return SpeechRequest(
        shape=shape,
        text=args[text_field],
        text_field=f"input.{text_field}",
        engine=engine,
        voice=args["voice"],
        openai_voice=openai_voice,
        voice_url=voice_url,
        speed=args.get("speed", 1.0),
        format=fmt or args.get("format") or "wav",
        sample_rate=sample_rate,
        stream=args["stream"],
        destination=args["destination"],
    )


def _openai(args: dict[str, Any], settings: TTSSettings) -> SpeechRequest:
    model = args["model"]
    if model is not None:
        _check_model(model)
    _check_openai_format(args["response_format"])
    engine = model if model in ENGINE_CHOICES else settings.engine
    voice = args["voice"]
    return _request(
        args,
        "openai",
        "input",
        engine,
        sample_rate=OPENAI_RATE,
        fmt=args["response_format"],
        openai_voice=voice is not None and voice.lower() in OPENAI_VOICES,
    )


def _refuse_other_shapes(
    job_input: Mapping[str, Any],
    shape: str,
    text_field: str,
    fields: dict[str, dict[str, Field]],
) -> None:
    """A field that belongs only to other shapes: one sentence naming it and the shape."""
    own = fields[shape]
    for name in job_input:
        if name in own:
            continue
        others = [other for other in fields if other != shape and name in fields[other]]
        if others:
            their = SHAPE_NAMES[others[0]]
            raise JobError(
                f"input.{name} belongs to {their}, but this job gives its words as "
                f"input.{text_field} ({SHAPE_NAMES[shape]}): use that shape's fields "
                f"({', '.join(sorted(own))})"
            )


def _check_model(model: str) -> None:
    if model in ENGINE_CHOICES or model.startswith(OPENAI_MODELS):
        return
    choices = [*ENGINE_CHOICES, *OPENAI_MODELS]
    raise JobError(
        f"input.model={shorten(model, 60)} is not a model of this worker: give an engine "
        f"({', '.join(ENGINE_CHOICES)}) or an OpenAI speech model ({', '.join(OPENAI_MODELS)}, "
        f"meaning the worker's engine){did_you_mean(model, choices)}"
    )


def _check_openai_format(fmt: str) -> None:
    allowed = ", ".join(f for f in OPENAI_FORMATS if f not in UNSUPPORTED_FORMATS)
    if fmt in UNSUPPORTED_FORMATS:
        raise JobError(
            f"input.response_format={fmt!r} cannot be made by this worker "
            f"({UNSUPPORTED_FORMATS[fmt]}): choose one of {allowed}"
        )
    if fmt not in OPENAI_FORMATS:
        raise JobError(
            f"input.response_format={shorten(fmt, 60)} is not allowed: choose one of "
            f"{allowed}{did_you_mean(fmt, OPENAI_FORMATS)}"
        )


def voice_for_openai(asked: str, voices: Mapping[str, str], default: str) -> str:
    """The engine voice an OpenAI voice name means.

    The engine's voice of that very name; else one named `<accent><gender>_<name>`, Kokoro's
    convention (af_alloy, am_echo, bm_fable, am_onyx, af_nova); else the engine's default
    voice. The result's `voice` says which one spoke.
    """
    name = asked.lower()
    if name in voices:
        return name
    suffixed = sorted(voice for voice in voices if voice.endswith(f"_{name}"))
    return suffixed[0] if suffixed else default
