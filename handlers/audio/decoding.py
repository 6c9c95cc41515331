"""A job's audio as Whisper hears it: fetched, decoded to 16 kHz mono, its length checked.

Decoding is PyAV's (faster_whisper.decode_audio): no ffmpeg binary. The length is checked right
after decoding, before any model sees the audio: time and memory grow with it.
"""

from __future__ import annotations

import io
import wave
from typing import Any

from ..base import JobContext
from ..errors import JobError
from .settings import AUDIO_MAX_DURATION_S

SAMPLE_RATE = 16_000

Samples = Any  # a float32 numpy array, mono, 16 kHz


def decode_job_audio(
    job: JobContext, audio: str | None, audio_base64: str | None, max_duration_s: int
) -> Samples:
    """The job's `audio` (a URL) or `audio_base64`, decoded; JobError names the field."""
    from faster_whisper import decode_audio

    field = "input.audio" if audio is not None else "input.audio_base64"
    path, _ = job.fetch("audio", audio, audio_base64)
    try:
        samples = decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    except Exception as exc:
        strerror = getattr(exc, "strerror", None)  # PyAV's errors: FFmpeg's message
        reason = strerror if isinstance(strerror, str) else str(exc)
        reason = reason.replace(f": '{path}'", "").replace(str(path), "the file")
        raise JobError(f"{field} could not be decoded as audio: {reason[:200]}") from None
    if len(samples) == 0:
        raise JobError(f"{field} has no audio samples")
    seconds = len(samples) / SAMPLE_RATE
    if seconds > max_duration_s:
        raise JobError(
            f"{field} is {seconds:.0f} s of audio, more than the {max_duration_s} s a job may "
            f"bring ({AUDIO_MAX_DURATION_S}): split it into shorter pieces"
        )
    return samples


def silence_wav(seconds: float = 0.5, rate: int = SAMPLE_RATE) -> bytes:
    """A short silent 16-bit mono WAV (the example job's input)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(seconds * rate))
    return buffer.getvalue()
