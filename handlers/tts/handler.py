"""The tts handler's lifecycle: engines and voices loaded once; each job read into one request,
spoken piece by piece, and answered with one result object or, streamed, a chunk per piece.

Whether a worker streams is decided when it starts, not per job (RUNPOD_SLIM_TTS_STREAM; see
TTSHandler.streaming for why).
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bootstrap.settings import did_you_mean

from .. import volume
from ..base import Handler, JobContext
from ..config import RESULTS_URL, HandlerConfig
from ..errors import JobError, SetupError
from ..transfer.results import (
    STREAM_CHUNK_LIMIT_BYTES,
    encoded_size,
    offload_destination,
)
from ..volume import shorten
from . import engines
from .audio import Samples, encode, output_rate, resample
from .engines import Engine, Voice
from .requests import SpeechRequest, all_fields, parse, voice_for_openai
from .settings import STREAM, TTSSettings, load
from .text import split_sentences

VOICE_CACHE_SIZE = 4
# Room in a streamed chunk for its fields beside the audio (a 300-character piece is at most
# 1,800 bytes of JSON, escaped).
CHUNK_RESERVE_BYTES = 4096


@dataclass(frozen=True)
class Speaking:
    """What a job speaks with, decided before the first word: voice, pieces, rate, format."""

    request: SpeechRequest
    engine: Engine
    voice: Voice
    pieces: tuple[str, ...]
    rate: int


class TTSHandler(Handler):
    """Speaks text with Piper (CPU), Kokoro or Qwen3-TTS (GPU), piece by piece."""

    name: ClassVar[str] = "tts"
    profile: ClassVar[str] = "tts"
    examples: ClassVar[tuple[Mapping[str, Any], ...]] = (
        {"text": "Hello from runpod slim. This worker speaks with the Piper engine."},
        {
            "model": "tts-1",
            "input": "The quick brown fox jumped over the lazy dog.",
            "voice": "alloy",
            "response_format": "mp3",
        },
        {"prompt": "A faster voice, for RunPod's tts clients.", "format": "ogg"},
    )

    def __init__(self, config: HandlerConfig, settings: TTSSettings | None = None) -> None:
        super().__init__(config)
        self.settings = settings if settings is not None else load(os.environ)
        self.engines: dict[str, Engine] = {}  # built on first use: only the engines used load
        self.fields = all_fields(self.settings)  # every shape's (what tools list and fuzz)
        self._voices: OrderedDict[tuple[str, str], Voice] = OrderedDict()
        self._loading = threading.Lock()
        self._building = threading.Lock()

    @property
    def streaming(self) -> bool:  # type: ignore[override]  # per worker, from its settings
        """Whether handler.py hands the SDK a generator (True) or a coroutine (False).

        runpod 1.12 decides per handler function, not per job, whether a job streams:
        rp_job.handle_job (and the local API) ask `inspect.isasyncgenfunction(handler)`. A
        generator's result is the list of everything it yielded (`return_aggregate_stream`;
        without it, nothing), so a generator worker can never answer /runsync with one object,
        and a coroutine worker has nothing to stream. So the worker chooses when it starts
        (RUNPOD_SLIM_TTS_STREAM): off, /runsync answers with the one result object and a job
        asking to stream is refused saying what to set; on, a job with `stream: true` gets a
        chunk per piece and a summary, and one without gets the result object as its only item.
        """
        return self.settings.stream

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

    async def run(self, job: JobContext) -> dict[str, Any]:
        """One job, answered with one result object (a worker that does not stream)."""
        request = parse(job.input, self.settings)
        if request.stream:
            raise JobError(
                f"input.stream=true needs a streaming worker: set {STREAM}=true on the "
                "endpoint (RunPod streams only from a worker started as a streaming one)"
            )
        return await self._whole(job, await self._prepare(job, request))

    async def stream(self, job: JobContext) -> AsyncIterator[dict[str, Any]]:
        """One job on a streaming worker: a chunk per piece and a summary when it asks to
        stream, else the result object as the only item."""
        request = parse(job.input, self.settings)
        speaking = await self._prepare(job, request)
        if not request.stream:
            yield await self._whole(job, speaking)
            return
        fmt, rate, pieces = request.format, speaking.rate, speaking.pieces

        def render(piece: str) -> tuple[Samples, list[tuple[int, bytes]]]:
            samples = self._speak(speaking, piece)
            return samples, _encode_parts(samples, rate, fmt)

        spoken: list[Samples] = []
        count = 0
        # The next piece is spoken while the current chunk travels to the caller.
        pending = asyncio.ensure_future(asyncio.to_thread(render, pieces[0]))
        try:
            for index, piece in enumerate(pieces):
                samples, parts = await job.within_time(asyncio.shield(pending))
                if index + 1 < len(pieces):
                    pending = asyncio.ensure_future(asyncio.to_thread(render, pieces[index + 1]))
                spoken.append(samples)
                job.progress(f"spoke {index + 1} of {len(pieces)} pieces")
                for length, data in parts:
                    chunk = {
                        "chunk": count,
                        "text": piece,
                        "audio_base64": base64.b64encode(data).decode(),
                        "format": fmt,
                        "sample_rate": rate,
                        "duration_s": round(length / rate, 3),
                    }
                    count += 1
                    yield chunk
        finally:
            # A caller that stops early leaves a piece in flight: let it finish unobserved.
            pending.add_done_callback(lambda done: done.cancelled() or done.exception())
        whole = await job.within_time(
            asyncio.to_thread(self._deliver, job, speaking, spoken, streamed=True)
        )
        yield {"done": True, "chunks": count, **whole}

    async def _prepare(self, job: JobContext, request: SpeechRequest) -> Speaking:
        """The engine and voice (loaded, or cloned from the job's clip), pieces and rate."""
        if request.destination is not None:
            _check_destination(job, request.destination)
        engine = await asyncio.to_thread(self.engine, request.engine)
        voice = await job.within_time(asyncio.to_thread(self._voice_for, job, engine, request))
        rate = output_rate(_codec(request.format), request.sample_rate, voice.sample_rate)
        pieces = tuple(split_sentences(request.text))
        return Speaking(request, engine, voice, pieces, rate)

    async def _whole(self, job: JobContext, speaking: Speaking) -> dict[str, Any]:
        """Every piece spoken in turn, then the whole file encoded once and delivered."""
        spoken: list[Samples] = []
        for index, piece in enumerate(speaking.pieces):
            spoken.append(await job.within_time(asyncio.to_thread(self._speak, speaking, piece)))
            job.progress(f"spoke {index + 1} of {len(speaking.pieces)} pieces")
        return await job.within_time(asyncio.to_thread(self._deliver, job, speaking, spoken))

    def _speak(self, speaking: Speaking, piece: str) -> Samples:
        voice = speaking.voice
        samples = voice.synthesize(piece, speaking.request.speed)
        return resample(samples, voice.sample_rate, speaking.rate)

    def _voice_for(self, job: JobContext, engine: Engine, request: SpeechRequest) -> Voice:
        lacks = engine.missing()
        if lacks:
            raise JobError(lacks)
        if request.voice_url is not None:
            if not engine.clones:
                raise JobError(
                    f"input.voice_url asks to clone a voice, and engine {engine.name!r} cannot: "
                    "leave input.voice_url out, or use an engine that clones (qwen)"
                )
            reference, _ = job.fetch("voice_url", request.voice_url, None)
            return engine.clone(reference, None)
        voices = engine.voices()
        name = request.voice or engine.default_voice
        if request.openai_voice:
            name = voice_for_openai(name, voices, engine.default_voice)
        if name not in voices:
            choices = sorted(voices)
            raise JobError(
                f"input.voice={shorten(name, 60)} is not a voice of engine {engine.name!r}: "
                f"choose one of {', '.join(choices)}{did_you_mean(name, choices)}; to add one, "
                f"{engine.where_to_add()}"
            )
        return self.voice(engine, name)

    def _deliver(
        self, job: JobContext, speaking: Speaking, spoken: list[Samples], *, streamed: bool = False
    ) -> dict[str, Any]:
        """The result object: the whole file (inline or delivered) and what it is.

        Streamed, the result object is the last chunk, so it too must fit RunPod's 1 MB: a
        whole file too big for that goes where an offloaded result goes, or is left out (the
        chunks hold every sample) when the worker has nowhere to put it.
        """
        import numpy as np

        request, rate = speaking.request, speaking.rate
        whole = np.concatenate(spoken)
        path = job.workdir / f"speech.{request.format}"
        path.write_bytes(encode(whole, rate, _codec(request.format)))
        destination = self._destination(job, request, path)
        size = path.stat().st_size
        too_big = encoded_size(size) > STREAM_CHUNK_LIMIT_BYTES - CHUNK_RESERVE_BYTES
        delivered: dict[str, Any]
        if streamed and destination is None and too_big:
            destination = offload_destination(self.config, job.id, path.name)
            why = (
                f"the whole file is {size / 1e6:.1f} MB, over what fits in RunPod's "
                f"{STREAM_CHUNK_LIMIT_BYTES // 10**6} MB per streamed chunk"
            )
            if destination is None:
                delivered = {
                    "left_out": f"{why}, and this worker has nowhere to put it "
                    f"(set {RESULTS_URL}, attach a volume, or give input.destination); "
                    "the chunks hold every sample",
                    "bytes": size,
                }
            else:
                delivered = {**job.deliver(path, destination), "offloaded": why}
        else:
            delivered = job.deliver(path, destination)
        audio = {"base64": "audio_base64", "url": "audio_url"}
        return {
            **{audio.get(key, key): value for key, value in delivered.items()},
            "format": request.format,
            "sample_rate": rate,
            "duration_s": round(len(whole) / rate, 3),
            "engine": speaking.engine.name,
            "voice": speaking.voice.name,
            "characters": len(request.text),
        }

    def _destination(self, job: JobContext, request: SpeechRequest, path: Path) -> str | None:
        """Where the whole file goes: the job's destination; for RunPod's shape, whose clients
        expect `audio_url`, the worker's results place when one is set; else inline."""
        if request.destination is not None:
            return request.destination
        place = self.config.results_url
        if request.shape == "runpod" and place:
            folder = "".join(c if c.isalnum() or c in "-_" else "_" for c in job.id)[:100]
            return f"{place.rstrip('/')}/{folder or 'job'}/{path.name}"
        return None


def _codec(fmt: str) -> str:
    """The encoding a requested format is made with (OpenAI's opus is Ogg Opus)."""
    return "ogg" if fmt == "opus" else fmt


def _encode_parts(samples: Samples, rate: int, fmt: str) -> list[tuple[int, bytes]]:
    """`samples` as (sample count, file) parts whose chunks each fit RunPod's 1 MB.

    One part almost always; a long piece at a high rate in wav is cut into equal parts, each a
    complete file (decoded and joined in order, they are the piece's samples).
    """
    data = encode(samples, rate, _codec(fmt))
    budget = STREAM_CHUNK_LIMIT_BYTES - CHUNK_RESERVE_BYTES
    if encoded_size(len(data)) <= budget or len(samples) < 2:
        return [(len(samples), data)]
    count = math.ceil(encoded_size(len(data)) / budget) + 1  # headers, and encoders vary
    step = math.ceil(len(samples) / count)
    return [
        part
        for start in range(0, len(samples), step)
        for part in _encode_parts(samples[start : start + step], rate, fmt)
    ]


def _check_destination(job: JobContext, destination: str) -> None:
    """Refuse a destination that cannot be written before any speaking is done."""
    job.check_destination(destination)
    if destination.startswith("volume://"):
        volume.check_destination(volume.parse(destination, "input.destination", job.config))
    elif destination.startswith("s3://"):
        job.credentials()  # a job without S3 credentials hears so now, not after speaking
