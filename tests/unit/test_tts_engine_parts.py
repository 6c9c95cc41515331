"""The pure parts of the torch tts engines: placement, budgets, phoneme pieces, Hub downloads.

These need no torch: the engines import their packages only when a model is loaded. The
engines themselves run in tests/integration/test_tts_engines.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.config import load_config
from handlers.errors import JobError
from handlers.tts import hub
from handlers.tts.kokoro import KokoroEngine, split_phonemes
from handlers.tts.qwen import Placement, QwenEngine, max_tokens, placement


@pytest.mark.parametrize(
    ("cuda", "capability", "flash", "expected"),
    [
        (False, None, False, Placement("cpu", "float32", "sdpa")),
        (False, None, True, Placement("cpu", "float32", "sdpa")),
        (True, (7, 5), True, Placement("cuda:0", "float16", "sdpa")),  # T4: no bf16, no FA2
        (True, (8, 0), False, Placement("cuda:0", "bfloat16", "sdpa")),
        (True, (8, 6), True, Placement("cuda:0", "bfloat16", "flash_attention_2")),
        (True, (9, 0), True, Placement("cuda:0", "bfloat16", "flash_attention_2")),
        (True, (12, 0), True, Placement("cuda:0", "bfloat16", "flash_attention_2")),
    ],
)
def test_placement_follows_the_gpu_and_flash_attn(
    cuda: bool, capability: tuple[int, int] | None, flash: bool, expected: Placement
) -> None:
    assert placement(cuda, capability, flash) == expected


def test_the_token_budget_grows_with_the_text() -> None:
    assert max_tokens("") == 60
    assert max_tokens("Hello world.") == 60 + 3 * 12


def test_long_phonemes_are_cut_at_spaces_within_the_limit() -> None:
    assert split_phonemes("  h\u0259l\u02c8O  ") == ["h\u0259l\u02c8O"]
    assert split_phonemes("") == []
    assert split_phonemes("ab cd ef", limit=5) == ["ab cd", "ef"]
    assert split_phonemes("abcdefgh", limit=3) == ["abc", "def", "gh"]  # no space: hard cut
    words = " ".join(["w\u02c8\u025c\u0279d"] * 200)
    pieces = split_phonemes(words)
    assert all(len(piece) <= 510 for piece in pieces)
    assert " ".join(pieces) == words


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"HF_HUB_OFFLINE": "1"}, True),
        ({"HF_HUB_OFFLINE": "0"}, False),
        ({"RUNPOD_SLIM_OFFLINE": "true"}, True),
        ({"RUNPOD_SLIM_OFFLINE": ""}, False),
    ],
)
def test_downloads_are_off_when_either_variable_says_so(
    environ: dict[str, str], expected: bool
) -> None:
    assert hub.offline(environ) is expected


def test_downloaded_files_move_in_with_the_config_last(tmp_path: Path) -> None:
    staging, into = tmp_path / "staging", tmp_path / "model"
    for name in ("config.json", "model.safetensors", "speech_tokenizer/config.json", "a.txt"):
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(name)
    (staging / ".cache" / "huggingface").mkdir(parents=True)
    (staging / ".cache" / "huggingface" / "x.lock").write_text("")
    moved: list[str] = []

    def watch(path: Path, target: Path) -> None:
        moved.append(str(target.relative_to(into)))
        path.replace(target)

    hub._move_in(staging, into, replace=watch)
    # Markers last (the deepest first), so no config.json stands before its weights do.
    assert moved == ["a.txt", "model.safetensors", "speech_tokenizer/config.json", "config.json"]
    assert (into / "speech_tokenizer" / "config.json").read_text() == "speech_tokenizer/config.json"
    assert not (into / ".cache").exists()


def test_a_reason_never_shows_the_token_or_the_staging_path(tmp_path: Path) -> None:
    error = OSError(f"401 for token hf_secret at {tmp_path}/.x.download-1\nsecond line")
    reason = hub._reason(error, "hf_secret", tmp_path / ".x.download-1")
    assert reason == "401 for token *** at the volume"
    assert len(hub._reason(OSError("x" * 500), None, tmp_path)) == 160


def test_offline_engines_without_weights_say_what_to_put_where(tmp_path: Path) -> None:
    config = load_config({"RUNPOD_SLIM_VOLUME": str(tmp_path)})
    kokoro = KokoroEngine(config, environ={"HF_HUB_OFFLINE": "1"})
    # This venv has no kokoro package: the sentence names it first, then the files.
    assert kokoro.missing() == (
        "engine 'kokoro' cannot run on this worker: the pip package kokoro is not in this "
        "worker's tts env (set RUNPOD_SLIM_TTS_ENGINE=kokoro or qwen: such a worker installs "
        f"the torch env); no config.json or kokoro-v1_0.pth in {tmp_path}/models/kokoro: put "
        "config.json and kokoro-v1_0.pth from hexgrad/Kokoro-82M there; no voices in "
        f"{tmp_path}/models/kokoro/voices: put each voice there as NAME.pt (such as "
        "voices/af_heart.pt from hexgrad/Kokoro-82M)"
    )
    assert kokoro.voices() == {}
    with pytest.raises(JobError, match=r"^input.voice='jf_alpha' is in a language"):
        kokoro.load("jf_alpha")
    qwen = QwenEngine(config, environ={})
    assert qwen.voices() == {
        "ryan": "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice, downloaded on first use"
    }
    assert kokoro.clones is False and qwen.clones is True


def test_qwen_finds_its_models_by_their_config(tmp_path: Path) -> None:
    config = load_config({"RUNPOD_SLIM_VOLUME": str(tmp_path)})
    root = tmp_path / "models" / "qwen3-tts"
    for name, kind in (("mine", "custom_voice"), ("other", "base"), ("junk", "voice_design")):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text(
            f'{{"tts_model_type": "{kind}", "talker_config": {{"spk_id": {{"Aiden": 3}}}}}}'
        )
    (root / "half").mkdir()  # a folder without its config.json is not a model
    qwen = QwenEngine(config, environ={"HF_HUB_OFFLINE": "1"})
    assert qwen._folders() == {"custom_voice": root / "mine", "base": root / "other"}
    assert qwen.voices() == {"aiden": str(root / "mine")}
