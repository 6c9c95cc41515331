"""A tts job's sound: the output rate, band-limited resampling, and encoding to a file.

Encoding is libsndfile's (the soundfile wheel bundles libsndfile 1.2 with LAME, mpg123 and
Opus): wav and flac as 16-bit PCM, mp3 as MPEG layer III, ogg as Opus, pcm as headerless 16-bit
little-endian samples. libsndfile has no AAC encoder. Opus takes only 8, 12,
16, 24 or 48 kHz: an ogg job without a sample rate gets the next Opus rate above the voice's
(22.05 kHz voices give 24 kHz). Other rates are resampled in numpy (torchaudio's kernel,
without importing torch).
"""

from __future__ import annotations

import io
import math
from typing import Any

from ..errors import JobError

FORMATS = ("wav", "mp3", "ogg", "flac")
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the only rates an Opus encoder takes
# format -> (libsndfile major format, subtype)
ENCODINGS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "OPUS"),
    # OpenAI's pcm: raw 16-bit little-endian samples, no header (the openai shape only).
    "pcm": ("RAW", "PCM_16"),
}
_ZERO_CROSSINGS = 6  # the resampling kernel's half width, in zero crossings of the sinc
_ROLLOFF = 0.99  # its cutoff, as a fraction of the lower Nyquist frequency

Samples = Any  # a float32 numpy array, mono, in -1..1


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
    endian = "LITTLE" if major == "RAW" else "FILE"  # OpenAI's pcm is little-endian
    clipped = np.clip(samples, -1.0, 1.0)
    soundfile.write(buffer, clipped, rate, format=major, subtype=subtype, endian=endian)
    return buffer.getvalue()
