"""handlers.tts.audio: output sample rates and resampling.

No model and no tts env: these run in the dev venv (numpy comes with requirements-dev.txt).
The integration tests check the resampler against torchaudio itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from handlers.errors import JobError
from handlers.tts.audio import output_rate, resample


@pytest.mark.parametrize(
    ("fmt", "asked", "native", "rate"),
    [
        ("wav", None, 22050, 22050),
        ("mp3", 44100, 22050, 44100),
        ("flac", 8000, 24000, 8000),
        ("ogg", None, 22050, 24000),
        ("ogg", None, 16000, 16000),
        ("ogg", None, 44100, 48000),
        ("ogg", 16000, 22050, 16000),
    ],
)
def test_output_rate(fmt: str, asked: int | None, native: int, rate: int) -> None:
    assert output_rate(fmt, asked, native) == rate


def test_opus_refuses_rates_it_cannot_encode() -> None:
    with pytest.raises(JobError) as info:
        output_rate("ogg", 44100, 22050)
    assert str(info.value) == (
        "input.sample_rate=44100 is not allowed with input.format='ogg' (Opus): choose one of "
        "8000, 16000, 24000, 48000"
    )


def tone(hz: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


@pytest.mark.parametrize(("source", "target"), [(22050, 16000), (22050, 48000), (24000, 8000)])
def test_resample_keeps_the_pitch_and_the_duration(source: int, target: int) -> None:
    wave = tone(440, source)
    out = resample(wave, source, target)
    assert out.dtype == np.float32 and len(out) == math.ceil(len(wave) * target / source)
    assert dominant_hz(out, target) == pytest.approx(440, abs=2)
    middle = out[target // 4 : -target // 4]  # away from the zero-padded edges
    assert float(np.sqrt(np.mean(middle**2))) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_resample_removes_what_the_new_rate_cannot_hold() -> None:
    above_nyquist = resample(tone(10_000, 22050), 22050, 16000)  # 10 kHz > 8 kHz
    assert float(np.sqrt(np.mean(above_nyquist[4000:-4000] ** 2))) < 0.01


def test_resample_to_the_same_rate_is_the_input() -> None:
    wave = tone(300, 22050)
    assert resample(wave, 22050, 22050) is wave
