"""The Kokoro and Qwen3-TTS engines, run for real on CPU with tiny random-weight models.

The bootstrap installs the tts env a kokoro/qwen worker gets (torch 2.7.0 and the engines'
packages from the hashed lock; about 3 GB, hence `slow`) into a cache for this module. Each
engine then runs in that env's Python, in a subprocess (torch, transformers and spaCy must not
meet the dev venv's packages in this process, and their import-time warnings are not this
suite's), on models that tests/support/tiny_tts.py builds with random weights from the
engines' own configuration classes and lays out on a volume as the real ones are. The
subprocess reports what it saw as JSON; the tests below assert on it.

The Hub is a boundary these machines cannot reach: downloads are off (HF_HUB_OFFLINE) except
in the one test that points the Hub client at a closed loopback port to see a failed download
reported without the token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap import ensure, load_settings

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hf_test_token_never_shown_7f3a"

pytestmark = pytest.mark.slow  # the tts env is the cu126 torch stack (about 3 GB)

# Runs in the tts env: builds the tiny Kokoro model, then drives the engine as a worker would.
KOKORO_PROBE = """
import json, sys
from pathlib import Path
import numpy as np
from handlers.config import load_config
from handlers.errors import JobError
from handlers.tts.kokoro import KokoroEngine
from tests.support.tiny_tts import build_kokoro

volume = Path(sys.argv[1])
build_kokoro(volume, voices=("af_heart", "bf_emma", "ef_dora"))
engine = KokoroEngine(load_config({"RUNPOD_SLIM_VOLUME": str(volume)}))
facts = {"missing": engine.missing(), "voices": sorted(engine.voices()), "clones": engine.clones}
voice = engine.load("af_heart")
facts["rate"] = voice.sample_rate
facts["same_model"] = engine.load("af_heart").model is voice.model
speech = {}
for speed in (1.0, 2.0, 0.5):
    samples = voice.synthesize("Hello world, this is a test.", speed)
    speech[str(speed)] = {
        "dtype": str(samples.dtype), "ndim": samples.ndim, "length": len(samples),
        "finite": bool(np.isfinite(samples).all()),
    }
facts["speech"] = speech
for name, text in (("bf_emma", "Good morning."), ("ef_dora", "Buenos dias.")):
    facts[name] = len(engine.load(name).synthesize(text, 1.0))
try:
    engine.clone(volume / "nothing.wav", None)
except JobError as exc:
    facts["clone_error"] = str(exc)
print(json.dumps(facts))
"""

QWEN_PROBE = """
import json, sys
from pathlib import Path
import numpy as np, soundfile
from handlers.config import load_config
from handlers.errors import JobError
from handlers.tts.qwen import QwenEngine, machine_placement, max_tokens
from tests.support.tiny_tts import build_qwen

volume = Path(sys.argv[1])
build_qwen(volume)
engine = QwenEngine(load_config({"RUNPOD_SLIM_VOLUME": str(volume)}))
facts = {"missing": engine.missing(), "voices": sorted(engine.voices()), "clones": engine.clones}
facts["placement"] = list(vars(machine_placement()).values())
voice = engine.load("ryan")
model = voice.loaded.model.model
facts["dtype"] = str(next(model.parameters()).dtype)
facts["attention"] = model.config._attn_implementation
facts["rate"] = voice.sample_rate
facts["same_model"] = engine.load("vivian").loaded is voice.loaded
text = "Hello world."
facts["budget"] = max_tokens(text)
facts["speech"] = {}
for speed in (1.0, 2.0):
    samples = voice.synthesize(text, speed)
    facts["speech"][str(speed)] = {
        "dtype": str(samples.dtype), "ndim": samples.ndim, "length": len(samples),
        "finite": bool(np.isfinite(samples).all()),
    }
clip = volume / "reference.wav"
t = np.arange(2 * 24000) / 24000
soundfile.write(clip, (0.3 * np.sin(2 * np.pi * 180 * t)).astype("float32"), 24000)
facts["cloned"] = {}
for transcript in (None, "A short sentence."):
    cloned = engine.clone(clip, transcript)
    samples = cloned.synthesize("Hello.", 1.0)
    facts["cloned"][str(transcript)] = [cloned.sample_rate, str(samples.dtype), len(samples)]
(volume / "not-audio.wav").write_text("this is not audio")
for name in ("not-audio.wav",):
    try:
        engine.clone(volume / name, None)
    except JobError as exc:
        facts["bad_clip"] = str(exc)
print(json.dumps(facts))
"""

# No weights anywhere and downloads off (or failing): what each engine says.
MISSING_PROBE = """
import json, sys
from pathlib import Path
from handlers.config import load_config
from handlers.errors import JobError
from handlers.tts.kokoro import KokoroEngine
from handlers.tts.qwen import QwenEngine
import os

volume = Path(sys.argv[1])
config = load_config({"RUNPOD_SLIM_VOLUME": str(volume)})
facts = {}
for engine in (KokoroEngine(config), QwenEngine(config)):
    facts[engine.name] = {"missing": engine.missing(), "voices": sorted(engine.voices())}
    try:
        engine.load(engine.default_voice)
    except JobError as exc:
        facts[engine.name]["load"] = str(exc)
facts["left"] = sorted(str(p.relative_to(volume)) for p in volume.rglob("*"))
print(json.dumps(facts))
"""


# A kokoro worker built as handler.py builds it, answering jobs in each request shape (the
# qwen engine asked for by the job: the worker's own shape and OpenAI's `model`), then a qwen
# worker cloning the voice of RunPod's `voice_url`.
HANDLER_PROBE = """
import asyncio, base64, io, json, sys
from pathlib import Path
import numpy as np, soundfile
from handler import adapt, build_handler
from tests.support.tiny_tts import build_kokoro, build_qwen

volume = Path(sys.argv[1])
build_kokoro(volume, voices=("af_heart",))
build_qwen(volume)
tone = 0.3 * np.sin(2 * np.pi * 180 * np.arange(2 * 24000) / 24000)
soundfile.write(volume / "reference.wav", tone.astype("float32"), 24000)
base = {"RUNPOD_SLIM_VOLUME": str(volume), "HANDLER_TYPE": "tts"}

def summary(output):
    if "error" in output:
        return output
    audio = output.pop("audio_base64", None)
    if audio:
        samples, rate = soundfile.read(io.BytesIO(base64.b64decode(audio)), dtype="float32")
        output["decoded"] = [len(samples), rate]
    return output

jobs = [
    {"text": "Hello there. A second sentence."},
    {"input": "Hello there.", "model": "tts-1", "voice": "alloy", "response_format": "wav"},
    {"prompt": "Hello.", "voice_url": "volume://reference.wav", "format": "wav"},
    {"text": "Hello there.", "engine": "qwen", "voice": "vivian", "format": "flac"},
    {"input": "Hello.", "model": "qwen", "voice": "ryan", "response_format": "wav"},
    {"text": "Hello.", "engine": "qwen", "voice": "nobody"},
]
outputs = []
for engine, asked in (("kokoro", jobs), ("qwen", [jobs[2]])):
    handler = build_handler({**base, "RUNPOD_SLIM_TTS_ENGINE": engine})
    job = adapt(handler, lambda job, message: None)
    outputs += [summary(asyncio.run(job({"id": "j", "input": item}))) for item in asked]
print(json.dumps(outputs))
"""


@pytest.fixture(scope="module")
def tts_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The site folder of the tts env a kokoro worker installs (real bootstrap, no GPU)."""
    base = tmp_path_factory.mktemp("tts-torch")
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_SLIM_", "BUCKET_"))},
        "HANDLER_TYPE": "tts",
        "RUNPOD_SLIM_TTS_ENGINE": "kokoro",
        "RUNPOD_SLIM_GPU": "none",
        "RUNPOD_SLIM_CACHE": str(base / "cache"),
        "RUNPOD_SLIM_VOLUME": str(base / "volume"),
    }
    env = ensure(load_settings(environ), environ=environ, activate=False, log=lambda line: None)
    yield Path(env.site_dir)


def probe(site: Path, script: str, volume: Path, **extra: str) -> Any:
    """Run `script` in the tts env's Python with `volume` as its argument; its JSON facts."""
    volume.mkdir(parents=True, exist_ok=True)
    environ = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_TOKEN")},
        "PYTHONPATH": f"{REPO}{os.pathsep}{site}",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(volume.parent / "hf-home"),  # never the machine's own Hub cache
        **extra,
    }
    proc = subprocess.run(
        [sys.executable, "-s", "-c", script, str(volume)],
        env=environ,
        cwd=volume.parent,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kokoro(tts_site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return probe(tts_site, KOKORO_PROBE, tmp_path_factory.mktemp("kokoro") / "volume")


@pytest.fixture(scope="module")
def qwen(tts_site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return probe(tts_site, QWEN_PROBE, tmp_path_factory.mktemp("qwen") / "volume")


def test_kokoro_speaks_float32_mono_at_24khz_from_the_volumes_weights(
    kokoro: dict[str, Any],
) -> None:
    assert kokoro["missing"] is None and kokoro["clones"] is False
    # Downloads off: the voices are the volume's files.
    assert kokoro["voices"] == ["af_heart", "bf_emma", "ef_dora"]
    assert kokoro["rate"] == 24_000 and kokoro["same_model"] is True
    for speed, facts in kokoro["speech"].items():
        assert facts["dtype"] == "float32" and facts["ndim"] == 1, speed
        assert facts["finite"] is True, speed
        # The decoder makes 600 samples (25 ms) per predicted frame.
        assert facts["length"] > 0 and facts["length"] % 600 == 0, speed
    # British English (misaki) and Spanish (espeak-ng) voices speak through the same model.
    assert kokoro["bf_emma"] > 0 and kokoro["ef_dora"] > 0


def test_kokoro_speed_scales_the_predicted_durations(kokoro: dict[str, Any]) -> None:
    lengths = {float(speed): facts["length"] for speed, facts in kokoro["speech"].items()}
    assert 0.4 < lengths[2.0] / lengths[1.0] < 0.6
    assert 1.7 < lengths[0.5] / lengths[1.0] < 2.3


def test_kokoro_refuses_to_clone_with_the_engine_that_can(kokoro: dict[str, Any]) -> None:
    assert (
        kokoro["clone_error"] == "engine 'kokoro' cannot clone a voice: use engine 'qwen' for that"
    )


def test_qwen_speaks_named_speakers_in_float32_with_sdpa_on_cpu(qwen: dict[str, Any]) -> None:
    assert qwen["missing"] is None and qwen["clones"] is True
    assert qwen["voices"] == ["ryan", "vivian"]  # the CustomVoice model's speakers
    assert qwen["placement"] == ["cpu", "float32", "sdpa"]
    assert (qwen["dtype"], qwen["attention"]) == ("torch.float32", "sdpa")
    assert qwen["rate"] == 24_000 and qwen["same_model"] is True
    normal = qwen["speech"]["1.0"]
    assert normal["dtype"] == "float32" and normal["ndim"] == 1 and normal["finite"] is True
    # 1920 samples per codec token (12.5 Hz), and never more tokens than the budget allows.
    assert normal["length"] % 1920 == 0
    assert 0 < normal["length"] <= qwen["budget"] * 1920


def test_qwen_speed_time_stretches(qwen: dict[str, Any]) -> None:
    faster = qwen["speech"]["2.0"]
    assert faster["dtype"] == "float32" and faster["finite"] is True
    ratio = faster["length"] / qwen["speech"]["1.0"]["length"]
    assert 0.45 < ratio < 0.55


def test_qwen_clones_a_voice_from_a_reference_clip(qwen: dict[str, Any]) -> None:
    # x-vector only (no transcript) and in-context (with the clip's transcript) both speak.
    for transcript, (rate, dtype, length) in qwen["cloned"].items():
        assert (rate, dtype) == (24_000, "float32"), transcript
        assert length > 0 and length % 1920 == 0, transcript
    assert qwen["bad_clip"] == (
        "the reference clip could not be read as audio: give a WAV, FLAC, OGG or MP3 file of "
        "a few seconds of one speaker"
    )


def test_missing_weights_say_what_to_put_where(tts_site: Path, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    facts = probe(tts_site, MISSING_PROBE, volume)
    kokoro_dir, qwen_dir = volume / "models" / "kokoro", volume / "models" / "qwen3-tts"
    assert facts["kokoro"]["missing"] == (
        "engine 'kokoro' cannot run on this worker: no config.json or kokoro-v1_0.pth in "
        f"{kokoro_dir}: put config.json and kokoro-v1_0.pth from hexgrad/Kokoro-82M there; "
        f"no voices in {kokoro_dir / 'voices'}: put each voice there as NAME.pt (such as "
        "voices/af_heart.pt from hexgrad/Kokoro-82M)"
    )
    assert facts["kokoro"]["voices"] == []
    assert facts["kokoro"]["load"] == (
        "engine 'kokoro' lacks files and downloads are off: put config.json and "
        f"kokoro-v1_0.pth and voices/af_heart.pt from hexgrad/Kokoro-82M in {kokoro_dir}"
    )
    advice = (
        "put the model folder of Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice (config.json, "
        "model.safetensors, the tokenizer files and speech_tokenizer/) at "
        f"{qwen_dir / 'Qwen3-TTS-12Hz-0.6B-CustomVoice'}"
    )
    assert facts["qwen"]["missing"] == (
        f"engine 'qwen' cannot run on this worker: no CustomVoice model in {qwen_dir}: {advice}"
    )
    assert facts["qwen"]["load"] == f"engine 'qwen' has no model: {advice}"
    assert facts["left"] == []  # asking wrote nothing on the volume


def test_a_failed_download_says_what_to_put_where_without_the_token(
    tts_site: Path, tmp_path: Path
) -> None:
    # Port 9 on loopback: nothing listens, so the Hub client fails at once (no other address).
    volume = tmp_path / "volume"
    facts = probe(
        tts_site,
        MISSING_PROBE,
        volume,
        HF_HUB_OFFLINE="0",
        HF_ENDPOINT="http://127.0.0.1:9",
        HF_TOKEN=TOKEN,
    )
    kokoro_dir = volume / "models" / "kokoro"
    assert facts["kokoro"]["missing"] is None  # downloads on: it will try
    assert "af_heart" in facts["kokoro"]["voices"]
    message = facts["kokoro"]["load"]
    assert message.startswith(
        "engine 'kokoro' lacks files: put config.json and kokoro-v1_0.pth and "
        f"voices/af_heart.pt from hexgrad/Kokoro-82M in {kokoro_dir} (downloading them from "
        "hexgrad/Kokoro-82M failed: "
    )
    assert message.endswith(")") and "\n" not in message
    assert facts["qwen"]["load"].startswith(
        "engine 'qwen' has no model: put the model folder of "
        "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice (config.json, model.safetensors, the tokenizer "
        "files and speech_tokenizer/) at "
    )
    for engine in ("kokoro", "qwen"):
        assert TOKEN not in json.dumps(facts[engine]), engine
        assert ".download-" not in facts[engine]["load"], engine
    # Nothing half-downloaded is left: only the empty folders the downloads were staged in.
    assert facts["left"] == ["models", "models/qwen3-tts"]


def test_gpu_check_rehearses_its_torch_checks_on_the_cpu(tts_site: Path, tmp_path: Path) -> None:
    """bench/gpu_check.py's attention and engine checks, run on the CPU with this env: on a
    lent GPU machine the same code runs on CUDA, so it must not first fail there."""
    environ = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_TOKEN")},
        "GPU_CHECK_REHEARSE_ON_CPU": "1",
        "HF_HOME": str(tmp_path / "hf-home"),
        "TMPDIR": str(tmp_path),
    }
    only = [arg for name in ("cuda", "attention", "kokoro", "qwen") for arg in ("--only", name)]
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--site", str(tts_site), *only],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    checks = json.loads(proc.stdout)["checks"]
    assert checks["cuda"] == {
        "status": "skipped",
        "detail": "torch 2.7.0+cu126 sees no CUDA device",
        "seconds": checks["cuda"]["seconds"],
    }
    attention = checks["attention"]
    assert attention["status"] == "ok", attention
    for row in (attention["full"], attention["causal"]):
        assert row["dtype"] == "bfloat16" and row["sdpa_max_error"] < 5e-2
        assert row["flash_attn"].startswith("skipped: flash_attn cannot be imported")
    kokoro, qwen = checks["kokoro"], checks["qwen"]
    assert kokoro["status"] == "ok", kokoro
    assert (kokoro["device"], kokoro["dtype"], kokoro["output_dtype"]) == (
        "cpu",
        "torch.float32",
        "float32",
    )
    assert kokoro["samples"][0] == kokoro["samples"][1] > 0  # Kokoro is deterministic
    assert qwen["status"] == "ok", qwen
    assert qwen["placement"] == {"device": "cpu", "dtype": "float32", "attention": "sdpa"}
    assert (qwen["dtype"], qwen["attention"]) == ("torch.float32", "sdpa")
    assert qwen["samples"] > 0 and qwen["cloned_samples"] > 0
    assert list(tmp_path.glob("gpu-check-*")) == []  # its temporary volumes are gone


def test_jobs_of_each_shape_speak_through_the_handler_with_both_engines(
    tts_site: Path, tmp_path: Path
) -> None:
    outputs = probe(tts_site, HANDLER_PROBE, tmp_path / "volume")
    plain, openai, cloning, flac, qwen_openai, unknown, cloned = outputs
    for output, engine, voice, fmt, unit in (
        (plain, "kokoro", "af_heart", "wav", 600),
        (openai, "kokoro", "af_heart", "wav", 600),  # "alloy": af_alloy is not on this volume
        (flac, "qwen", "vivian", "flac", 1920),
        (qwen_openai, "qwen", "ryan", "wav", 1920),
        (cloned, "qwen", "clone", "wav", 1920),  # RunPod's shape, its voice_url cloned
    ):
        assert (output["engine"], output["voice"], output["format"]) == (engine, voice, fmt)
        length, rate = output["decoded"]
        assert output["sample_rate"] == rate == 24_000
        assert length > 0 and length % unit == 0, output  # whole frames / codec tokens
        assert output["duration_s"] == round(length / rate, 3)
    assert plain["characters"] == len("Hello there. A second sentence.")
    assert cloning == {
        "error": "input.voice_url asks to clone a voice, and engine 'kokoro' cannot: leave "
        "input.voice_url out, or use an engine that clones (qwen)"
    }
    assert unknown["error"].startswith(
        "input.voice='nobody' is not a voice of engine 'qwen': choose one of ryan, vivian; to "
        "add one, use a CustomVoice model with that speaker, or give a reference clip"
    )
