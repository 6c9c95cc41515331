"""handlers.tts.requests: the three request shapes read into one SpeechRequest, and each shape's
bad input refused with one sentence naming the field, the value and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.errors import JobError
from handlers.tts.requests import SpeechRequest, all_fields, parse, voice_for_openai
from handlers.tts.settings import TTSSettings

SETTINGS = TTSSettings()


def request(**changes: Any) -> SpeechRequest:
    base: dict[str, Any] = {
        "shape": "worker",
        "text": "Hi.",
        "text_field": "input.text",
        "engine": "piper",
        "voice": None,
        "openai_voice": False,
        "voice_url": None,
        "speed": 1.0,
        "format": "wav",
        "sample_rate": None,
        "stream": False,
        "destination": None,
    }
    return SpeechRequest(**{**base, **changes})


@pytest.mark.parametrize(
    ("job_input", "expected"),
    [
        ({"text": "Hi."}, request()),
        (
            {"text": "Hi.", "voice": "v", "speed": 1.5, "format": "flac", "sample_rate": 16000},
            request(voice="v", speed=1.5, format="flac", sample_rate=16000),
        ),
        (
            {"text": "Hi.", "engine": "kokoro", "stream": True, "destination": "volume://a.wav"},
            request(engine="kokoro", stream=True, destination="volume://a.wav"),
        ),
        (
            {
                "model": "tts-1",
                "input": "Hi.",
                "voice": "alloy",
                "response_format": "opus",
                "speed": 1.25,
            },
            request(
                shape="openai",
                text_field="input.input",
                voice="alloy",
                openai_voice=True,
                speed=1.25,
                format="opus",
                sample_rate=24000,
            ),
        ),
        (  # OpenAI's defaults: mp3; a model naming an engine picks it; any voice name is kept
            {"model": "qwen", "input": "Hi.", "voice": "ryan"},
            request(
                shape="openai",
                text_field="input.input",
                engine="qwen",
                voice="ryan",
                format="mp3",
                sample_rate=24000,
            ),
        ),
        (
            {"model": "gpt-4o-mini-tts-2025-03-20", "input": "Hi.", "response_format": "pcm"},
            request(
                shape="openai",
                text_field="input.input",
                format="pcm",
                sample_rate=24000,
            ),
        ),
        (
            {"prompt": "Hi.", "voice_url": "https://example.com/me.wav", "format": "mp3"},
            request(
                shape="runpod",
                text_field="input.prompt",
                voice_url="https://example.com/me.wav",
                format="mp3",
            ),
        ),
        (
            {"prompt": "Hi.", "voice": "en_US-joe-medium"},
            request(shape="runpod", text_field="input.prompt", voice="en_US-joe-medium"),
        ),
    ],
)
def test_each_shape_reads_into_one_request(
    job_input: dict[str, Any], expected: SpeechRequest
) -> None:
    assert parse(job_input, SETTINGS) == expected


def test_the_worker_engine_is_the_default_in_every_shape() -> None:
    qwen = TTSSettings(engine="qwen")
    assert parse({"text": "Hi."}, qwen).engine == "qwen"
    assert parse({"input": "Hi.", "model": "tts-1-hd"}, qwen).engine == "qwen"
    assert parse({"prompt": "Hi."}, qwen).engine == "qwen"


@pytest.mark.parametrize(
    ("job_input", "error"),
    [
        (
            {},
            "input.text is required: the words to speak (OpenAI's shape gives them as "
            "input.input, RunPod's as input.prompt)",
        ),
        (
            {"text": "Hi.", "prompt": "Hi."},
            "input.text and input.prompt were given together: give the words in exactly one of "
            "input.text, input.input (OpenAI's shape) or input.prompt (RunPod's shape)",
        ),
        # the worker's own shape
        ({"text": 5}, "input.text must be a string, got integer 5"),
        ({"text": "x" * 5001}, "input.text is 5001 long; the limit is 5000"),
        (
            {"text": "Hi.", "format": "opus"},
            "input.format='opus' is not allowed: choose one of wav, mp3, ogg, flac",
        ),
        (
            {"text": "Hi.", "response_format": "mp3"},
            "input.response_format belongs to OpenAI's speech shape, but this job gives its "
            "words as input.text (this worker's own shape): use that shape's fields "
            "(credentials, destination, engine, format, sample_rate, speed, stream, text, voice)",
        ),
        (
            {"text": "Hi.", "voice_url": "https://example.com/me.wav"},
            "input.voice_url belongs to RunPod's tts endpoint shape, but this job gives its "
            "words as input.text (this worker's own shape): use that shape's fields "
            "(credentials, destination, engine, format, sample_rate, speed, stream, text, voice)",
        ),
        ({"text": "Hi.", "stream": "yes"}, "input.stream must be true or false, got string 'yes'"),
        # OpenAI's shape
        ({"input": ""}, "input.input='': no letters or digits to speak"),
        (
            {"input": "Hi.", "response_format": "aac"},
            "input.response_format='aac' cannot be made by this worker (its encoder, libsndfile, "
            "writes no AAC): choose one of mp3, opus, flac, wav, pcm",
        ),
        (
            {"input": "Hi.", "response_format": "ogg"},
            "input.response_format='ogg' is not allowed: choose one of mp3, opus, flac, wav, pcm",
        ),
        (
            {"input": "Hi.", "model": "tts-2"},
            "input.model='tts-2' is not a model of this worker: give an engine (piper, kokoro, "
            "qwen) or an OpenAI speech model (tts-1, tts-1-hd, gpt-4o-mini-tts, meaning the "
            "worker's engine) (did you mean 'tts-1'?)",
        ),
        ({"input": "Hi.", "speed": 4.0}, "input.speed=4.0 is too large: the maximum is 2"),
        (
            {"input": "Hi.", "format": "wav"},
            "input.format belongs to this worker's own shape, but this job gives its words as "
            "input.input (OpenAI's speech shape): use that shape's fields (credentials, "
            "destination, input, model, response_format, speed, stream, voice)",
        ),
        (
            {"input": "Hi.", "instructions": "cheerful"},
            "input.instructions is not a known field; known fields: credentials, destination, "
            "input, model, response_format, speed, stream, voice",
        ),
        # RunPod's shape
        ({"prompt": None}, "input.prompt is required: the words to speak"),
        (
            {"prompt": "Hi.", "format": "aac"},
            "input.format='aac' is not allowed: choose one of wav, mp3, ogg, flac",
        ),
        (
            {"prompt": "Hi.", "sample_rate": 16000},
            "input.sample_rate belongs to this worker's own shape, but this job gives its words "
            "as input.prompt (RunPod's tts endpoint shape): use that shape's fields "
            "(credentials, destination, format, prompt, stream, voice, voice_url)",
        ),
        (
            {"prompt": "Hi.", "voice": "a", "voice_url": "https://example.com/me.wav"},
            "input.voice and input.voice_url were given together: give a voice by name or a "
            "reference clip to clone, not both",
        ),
        ({"prompt": "Hi.", "voice_url": 3}, "input.voice_url must be a string, got integer 3"),
    ],
)
def test_bad_input_in_each_shape_gets_one_sentence(job_input: dict[str, Any], error: str) -> None:
    with pytest.raises(JobError) as info:
        parse(job_input, SETTINGS)
    assert str(info.value) == error


def test_every_field_of_every_shape_is_listed_once() -> None:
    assert sorted(all_fields(SETTINGS)) == [
        "credentials",
        "destination",
        "engine",
        "format",
        "input",
        "model",
        "prompt",
        "response_format",
        "sample_rate",
        "speed",
        "stream",
        "text",
        "voice",
        "voice_url",
    ]


@pytest.mark.parametrize(
    ("asked", "voices", "voice"),
    [
        ("alloy", {"af_alloy": "", "af_heart": "", "am_echo": ""}, "af_alloy"),
        ("Echo", {"af_alloy": "", "af_heart": "", "am_echo": ""}, "am_echo"),
        ("shimmer", {"af_alloy": "", "af_heart": ""}, "af_heart"),  # none: the default
        ("nova", {"nova": "", "af_nova": "", "af_heart": ""}, "nova"),  # its own name first
        ("onyx", {"en_US-joe-medium": ""}, "en_US-joe-medium"),
    ],
)
def test_openai_voices_map_onto_the_engines(asked: str, voices: dict[str, str], voice: str) -> None:
    default = "af_heart" if "af_heart" in voices else "en_US-joe-medium"
    assert voice_for_openai(asked, voices, default) == voice
