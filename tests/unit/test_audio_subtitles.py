"""handlers.audio.subtitles: subtitles, timestamps, segment output; and the example's silence."""

from __future__ import annotations

import io
import math
import wave

from handlers.audio import AudioHandler
from handlers.audio.decoding import silence_wav
from handlers.audio.subtitles import clean_segment, timestamp, to_srt, to_vtt

SEGMENTS = [
    {"start": 0.031, "end": 2.5, "text": " Good morning. "},
    {"start": 2.5, "end": 3661.0456, "text": "Please   call me\nback.", "speaker": "SPEAKER_01"},
    {"start": 4000.0, "end": 4001.0, "text": "   "},  # nothing to show: no cue
]


def test_timestamps() -> None:
    assert timestamp(0) == "00:00:00,000"
    assert timestamp(0.0314) == "00:00:00,031"
    assert timestamp(3661.0456, ".") == "01:01:01.046"
    assert timestamp(59.9999) == "00:01:00,000"  # rounds into the next minute
    assert timestamp(-0.2) == "00:00:00,000"
    assert timestamp(100 * 3600) == "100:00:00,000"


def test_srt() -> None:
    assert to_srt(SEGMENTS) == (
        "1\n00:00:00,031 --> 00:00:02,500\nGood morning.\n\n"
        "2\n00:00:02,500 --> 01:01:01,046\n[SPEAKER_01] Please call me back.\n"
    )
    assert to_srt([]) == ""


def test_vtt() -> None:
    assert to_vtt(SEGMENTS) == (
        "WEBVTT\n\n"
        "00:00:00.031 --> 00:00:02.500\nGood morning.\n\n"
        "00:00:02.500 --> 01:01:01.046\n[SPEAKER_01] Please call me back.\n"
    )
    assert to_vtt([]) == "WEBVTT\n\n"


def test_a_cue_never_ends_before_it_starts() -> None:
    assert to_srt([{"start": 2.0, "end": 1.0, "text": "x"}]) == (
        "1\n00:00:02,000 --> 00:00:02,000\nx\n"
    )


def test_clean_segment() -> None:
    raw = {
        "start": 1.23456,
        "end": 2.0,
        "text": " hello there ",
        "speaker": "SPEAKER_00",
        "words": [
            {"word": "hello", "start": 1.23456, "end": 1.5, "score": 0.91234, "speaker": "S"},
            {"word": "there", "start": math.nan, "score": None},  # no timing: left out
        ],
        "chars": [],
    }
    assert clean_segment(raw) == {
        "start": 1.235,
        "end": 2.0,
        "text": "hello there",
        "speaker": "SPEAKER_00",
        "words": [
            {"word": "hello", "start": 1.235, "end": 1.5, "score": 0.912, "speaker": "S"},
            {"word": "there"},
        ],
    }


def test_silence_wav_and_the_example() -> None:
    with wave.open(io.BytesIO(silence_wav(0.25)), "rb") as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) == (1, 2, 16000)
        assert clip.getnframes() == 4000
    [example] = AudioHandler.examples
    assert example["model"] == "volume://models/whisper/tiny.en"
