"""worker-faster_whisper's schema and output (handlers.audio.compat), without a model.

Segments are faster-whisper's own Segment and Word dataclasses (faster-whisper is in the dev
venv), built by hand: what a transcription would give.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
from faster_whisper.transcribe import Segment, Word

from handlers.audio.compat import (
    FASTER_WHISPER,
    OFFICIAL_FIELDS,
    WHISPERX,
    official_fields,
    parse_suppress_tokens,
    read_request,
    recognise,
    segment_json,
    temperatures,
    transcript,
    words_json,
)
from handlers.errors import JobError

WHISPERX_FIELDS = {
    *("align", "align_model", "audio", "audio_base64", "batch_size", "compute_type"),
    *("credentials", "diarize", "hf_token", "initial_prompt", "language", "max_speakers"),
    *("min_speakers", "model", "output_formats", "task", "vad_offset", "vad_onset"),
}


def segment(i: int, start: float, end: float, text: str, words: list[Word] | None = None) -> Any:
    return Segment(
        id=i,
        seek=int(start * 100),
        start=start,
        end=end,
        text=text,
        tokens=[50364, 400 + i, 50414],
        avg_logprob=-0.25,
        compression_ratio=1.1,
        no_speech_prob=0.01,
        words=words,
        temperature=0.0,
    )


WORDS = [Word(0.0, 0.6, " Good", 0.9), Word(0.6, 2.5, " morning.", 0.8)]
SEGMENTS = [
    segment(1, 0.0, 2.5, " Good morning.", WORDS),
    segment(2, 2.5, 3661.0456, " Please call --> me back.", [Word(2.5, 3.0, " Please", 0.7)]),
]


def test_the_official_schema_has_its_21_fields_and_defaults() -> None:
    fields = official_fields()
    assert set(OFFICIAL_FIELDS) == set(fields) - {"credentials"} and len(OFFICIAL_FIELDS) == 21
    defaults = {name: fields[name].default for name in OFFICIAL_FIELDS}
    # worker-faster_whisper's src/rp_schema.py defaults.
    assert defaults == {
        "audio": None,
        "audio_base64": None,
        "model": "base",
        "transcription": "plain_text",
        "translate": False,
        "translation": "plain_text",
        "language": None,
        "temperature": 0,
        "best_of": 5,
        "beam_size": 5,
        "patience": 1.0,
        "length_penalty": 0,
        "suppress_tokens": "-1",
        "initial_prompt": None,
        "condition_on_previous_text": True,
        "temperature_increment_on_fallback": 0.2,
        "compression_ratio_threshold": 2.4,
        "logprob_threshold": -1.0,
        "no_speech_threshold": 0.6,
        "enable_vad": False,
        "word_timestamps": False,
    }


def test_defaults_become_faster_whisper_options() -> None:
    request = read_request({"audio": "volume://a.wav"})
    assert request.model == "base" and request.transcription == "plain_text"
    assert request.options.kwargs() == {
        "beam_size": 5,
        "best_of": 5,
        "patience": 1.0,
        "length_penalty": 0.0,
        "temperature": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        "compression_ratio_threshold": 2.4,
        "log_prob_threshold": -1.0,
        "no_speech_threshold": 0.6,
        "condition_on_previous_text": True,
        "initial_prompt": None,
        "suppress_tokens": [-1],
        "vad_filter": False,
    }


def test_null_turns_a_threshold_or_the_fallback_off() -> None:
    request = read_request(
        {
            "audio": "volume://a.wav",
            "temperature": 0.4,
            "temperature_increment_on_fallback": None,
            "compression_ratio_threshold": None,
            "logprob_threshold": None,
            "no_speech_threshold": None,
            "beam_size": None,  # elsewhere null is the default
        }
    )
    options = request.options.kwargs()
    assert options["temperature"] == [0.4] and options["beam_size"] == 5
    assert options["compression_ratio_threshold"] is None
    assert options["log_prob_threshold"] is None and options["no_speech_threshold"] is None


@pytest.mark.parametrize(
    ("start", "increment"), [(0.0, 0.2), (0.5, 0.2), (0.0, 0.1), (0.3, 0.25), (1.0, 0.2)]
)
def test_the_fallback_schedule_is_the_official_workers(start: float, increment: float) -> None:
    # The official worker: tuple(np.arange(temperature, 1.0 + 1e-6, increment)).
    expected = np.arange(start, 1.0 + 1e-6, increment)
    assert temperatures(start, increment) == pytest.approx(tuple(expected), abs=1e-9)
    assert temperatures(start, 0) == (start,) and temperatures(start, None) == (start,)


def test_the_official_test_inputs_spelling_of_plain_text_is_read() -> None:
    # worker-faster_whisper's own test_input.json writes "plain text".
    request = read_request({"audio": "volume://a.wav", "transcription": "plain text"})
    assert request.transcription == "plain_text"


def test_suppress_tokens() -> None:
    assert parse_suppress_tokens("-1") == (-1,)
    assert parse_suppress_tokens(" -1, 50363 ,1") == (-1, 50363, 1)
    assert parse_suppress_tokens("") == ()
    for bad in ("a", "-2", "1,,2", "1.5", "--1", "1²", "9" * 12):
        assert parse_suppress_tokens(bad) is None, bad


@pytest.mark.parametrize(
    ("job_input", "schema"),
    [
        ({"audio": "https://x/a.wav", "model": "turbo"}, FASTER_WHISPER),  # its README example
        ({"audio_base64": "AAAA"}, FASTER_WHISPER),
        ({"audio": "a", "transcription": "srt", "word_timestamps": True}, FASTER_WHISPER),
        ({"audio": "a", "credentials": {}, "enable_vad": True}, FASTER_WHISPER),
        ({"audio": "a", "output_formats": ["json"]}, WHISPERX),
        ({"audio": "a", "language": "en", "task": "translate", "credentials": {}}, WHISPERX),
        ({"audio": "a", "align": True, "initial_prompt": "x"}, WHISPERX),
    ],
)
def test_a_job_is_read_as_one_schema(job_input: dict[str, Any], schema: str) -> None:
    assert recognise(job_input, WHISPERX_FIELDS) == schema


def test_a_job_mixing_both_schemas_is_refused_with_why() -> None:
    with pytest.raises(JobError) as caught:
        recognise(
            {"audio": "a", "transcription": "srt", "translate": True, "align": True},
            WHISPERX_FIELDS,
        )
    assert str(caught.value) == (
        "input mixes worker-faster_whisper fields (transcription, translate) with this worker's "
        "whisperx fields (align), and a job is read as one schema or the other: send only the "
        'fields of one (RUNPOD-SLIM.md, "From worker-faster_whisper", lists both)'
    )


def test_an_unknown_field_gets_a_hint_from_both_schemas() -> None:
    with pytest.raises(JobError) as caught:
        recognise({"audio": "a", "transcripton": "srt"}, WHISPERX_FIELDS)
    message = str(caught.value)
    assert message.startswith(
        "input.transcripton is not a known field (did you mean 'transcription'?); a job uses "
        "worker-faster_whisper's fields (audio, audio_base64, beam_size, best_of, "
    )
    assert "this worker's whisperx fields (align, align_model, audio," in message
    with pytest.raises(JobError, match=r"did you mean 'output_formats'"):
        recognise({"audio": "a", "output_format": ["srt"]}, WHISPERX_FIELDS)
    # Once a schema is known, its own validation names the unknown field.
    assert recognise({"audio": "a", "beam_size": 2, "x": 1}, WHISPERX_FIELDS) == FASTER_WHISPER
    with pytest.raises(JobError, match=r"^input.x is not a known field; known fields: audio, "):
        read_request({"audio": "a", "beam_size": 2, "x": 1})


def test_segments_and_words_are_the_official_workers() -> None:
    first = segment_json(SEGMENTS[0])
    assert first == {
        "id": 1,
        "seek": 0,
        "start": 0.0,
        "end": 2.5,
        "text": " Good morning.",
        "tokens": [50364, 401, 50414],
        "temperature": 0.0,
        "avg_logprob": -0.25,
        "compression_ratio": 1.1,
        "no_speech_prob": 0.01,
    }
    json.dumps([segment_json(s) for s in SEGMENTS])  # plain JSON types only
    assert words_json(SEGMENTS) == [
        {"word": " Good", "start": 0.0, "end": 0.6},
        {"word": " morning.", "start": 0.6, "end": 2.5},
        {"word": " Please", "start": 2.5, "end": 3.0},
    ]
    assert words_json([segment(3, 0, 1, " x")]) == []  # no words asked for


def test_the_four_transcript_formats() -> None:
    assert transcript("plain_text", SEGMENTS) == "Good morning. Please call --> me back."
    assert transcript("formatted_text", SEGMENTS) == "Good morning.\nPlease call --> me back."
    assert transcript("srt", SEGMENTS) == (
        "1\n00:00:00,000 --> 00:00:02,500\nGood morning.\n\n"
        "2\n00:00:02,500 --> 01:01:01,046\nPlease call -> me back.\n\n"
    )
    vtt = transcript("vtt", SEGMENTS)
    assert vtt == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.500\nGood morning.\n\n"
        "00:00:02.500 --> 01:01:01.046\nPlease call -> me back.\n\n"
    )
    timing = re.compile(r"^\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d$")
    assert [line for line in vtt.splitlines() if "-->" in line and timing.match(line)]
    assert transcript("srt", []) == "" and transcript("vtt", []) == "WEBVTT\n\n"


def test_the_whisperx_fields_here_are_the_handlers() -> None:
    from handlers.audio.whisperx_job import WHISPERX_FIELDS as HANDLER_FIELDS

    assert HANDLER_FIELDS == WHISPERX_FIELDS
