"""A whisperx job's input, checked into a WhisperxRequest (handlers.audio.whisperx_job).

No model: the run itself is tested with a real one in tests/integration/test_audio_handler.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from handlers.audio.whisperx_job import WhisperxRequest, read_whisperx_request
from handlers.errors import JobError

DEFAULT = "large-v3"


def read(token: str | None = None, **job_input: Any) -> WhisperxRequest:
    return read_whisperx_request(job_input, DEFAULT, token)


def test_defaults_fill_a_typed_request() -> None:
    assert read(audio="volume://a.wav") == WhisperxRequest(
        audio="volume://a.wav",
        audio_base64=None,
        model=DEFAULT,
        language=None,
        task="transcribe",
        batch_size=8,
        compute_type=None,
        initial_prompt=None,
        vad_onset=0.5,
        vad_offset=0.363,
        align=False,
        align_model=None,
        diarize=False,
        min_speakers=None,
        max_speakers=None,
        hf_token=None,
        output_formats=("json", "text"),
    )


def test_the_jobs_token_comes_before_the_endpoints_and_is_never_shown() -> None:
    assert read("hf_endpoint", audio_base64="AAAA", diarize=True).hf_token == "hf_endpoint"
    request = read("hf_endpoint", audio_base64="AAAA", diarize=True, hf_token="hf_job")
    assert request.hf_token == "hf_job"
    assert "hf_job" not in repr(request) and "hf_endpoint" not in repr(request)


@pytest.mark.parametrize(
    ("job_input", "error"),
    [
        (
            {},
            "give exactly one of input.audio (an https://, s3:// or volume:// URL) and "
            "input.audio_base64",
        ),
        (
            {"audio_base64": "AAAA", "diarize": True, "min_speakers": 3, "max_speakers": 2},
            "input.min_speakers=3 is more than input.max_speakers=2",
        ),
        (
            {"audio_base64": "AAAA", "max_speakers": 2},
            "input.min_speakers and input.max_speakers need input.diarize=true",
        ),
        (
            {"audio_base64": "AAAA", "diarize": True},
            "input.diarize=true needs a Hugging Face token that may read "
            "pyannote/speaker-diarization-3.1: set HF_TOKEN on the endpoint or pass "
            "input.hf_token",
        ),
        (
            {"audio_base64": "AAAA", "output_formats": []},
            "input.output_formats=[]: give at least one of json, text, srt, vtt",
        ),
        (
            {"audio_base64": "AAAA", "output_formats": ["vt"]},
            "input.output_formats=['vt']: 'vt' is not allowed: choose from json, text, srt, "
            "vtt (did you mean 'vtt'?)",
        ),
        (
            {"audio_base64": "AAAA", "align_model": "/etc"},
            "input.align_model='/etc' is not allowed: give a Hugging Face model name (such as "
            '"facebook/wav2vec2-base-960h") or a volume:// directory of a wav2vec2 CTC model',
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field(job_input: dict[str, Any], error: str) -> None:
    with pytest.raises(JobError) as info:
        read(**job_input)
    assert str(info.value) == error
