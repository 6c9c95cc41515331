"""The tts handler's lifecycle: engines and voices loaded once, each job spoken sentence by
sentence and streamed, the whole file delivered at the end."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from bootstrap.settings import did_you_mean

from .. import volume
from ..base import Handler, JobContext
from ..config import HandlerConfig
from ..errors import JobError, SetupError
from ..io import credentials_for, parse_s3, scheme_of
from ..validation import Field, validate
from ..volume import shorten
from . import engines
from .audio import FORMATS, SAMPLE_RATES, Samples, encode, output_rate, resample
from .engines import Engine, Voice
from .settings import ENGINE_CHOICES, TTSSettings, load
from .text import speakable, split_sentences

VOICE_CACHE_SIZE = 4


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

    def __init__(self, config: HandlerConfig, settings: TTSSettings | None = None) -> None:
        super().__init__(config)
        self.settings = settings if settings is not None else load(os.environ)
        self.engines: dict[str, Engine] = {}  # built on first use: only the engines used load
        self.fields = {
            "text": Field(
                str,
                required=True,
                max_length=self.settings.max_chars,
                check=lambda text: None if speakable(text) else "no letters or digits to speak",
                help="the words to speak",
            ),
            "voice": Field(
                str, max_length=200, help="a voice of the engine; its default when left out"
            ),
            "speed": Field(float, default=1.0, minimum=0.5, maximum=2.0),
            "format": Field(str, default="wav", choices=FORMATS),
            "sample_rate": Field(int, choices=SAMPLE_RATES),
            "engine": Field(str, default=self.settings.engine, choices=ENGINE_CHOICES),
            "destination": Field(str, help="s3://bucket/key or volume://path"),
            "credentials": Field(
                dict, secret=True, help="endpoint_url, access_key_id, secret_access_key"
            ),
        }
        self._voices: OrderedDict[tuple[str, str], Voice] = OrderedDict()
        self._loading = threading.Lock()
        self._building = threading.Lock()

    def setup(self) -> None:
        """Load the default engine's default voice and speak once (the first run is slow)."""
        engine = self.engine(self.settings.engine)
        lacks = engine.missing()
        if lacks:
            raise SetupError(lacks)
        voice = self.voice(engine, engine.default_voice)
        encode(resample(voice.synthesize("Ready.", 1.0), voice.sample_rate, 16_000), 16_000, "mp3")

    def engine(self, name: str) -> Engine:
        """The engine called `name`, built once (its module imported then)."""
        with self._building:
            if name not in self.engines:
                self.engines[name] = engines.create(name, self.config)
            return self.engines[name]

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
        engine = await asyncio.to_thread(self.engine, args["engine"])
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
