"""The audio handler's checks that need no model: what `align_model` may name
(handlers.audio.alignment), what `language` may be (handlers.audio.languages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.audio.alignment import check_align_model
from handlers.audio.languages import check_english_only, check_language
from handlers.errors import JobError

REFUSED = (
    'is not allowed: give a Hugging Face model name (such as "facebook/wav2vec2-base-960h") '
    "or a volume:// directory of a wav2vec2 CTC model"
)


@pytest.mark.parametrize(
    "name",
    [None, "facebook/wav2vec2-base-960h", "WAV2VEC2_ASR_BASE_960H", "volume://models/align/x"],
)
def test_align_model_may_be_a_model_name_or_a_volume_directory(name: str | None) -> None:
    check_align_model(name)


@pytest.mark.parametrize(
    "name",
    [
        "/etc",
        "/runpod-volume/.runpod-slim/hub",
        "~/models",
        "../models/x",
        "org/../x",
        "./x",
        "a/b/c",
        "file:///etc",
        "",
        "x" * 300,
    ],
)
def test_align_model_is_never_a_path_on_the_workers_disk(name: str) -> None:
    with pytest.raises(JobError) as info:
        check_align_model(name)
    assert str(info.value) == f"input.align_model={name[:100]!r} {REFUSED}"


def test_a_name_that_is_a_local_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models" / "align").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # from_pretrained would load "models/align" from the cwd
    with pytest.raises(JobError) as info:
        check_align_model("models/align")
    assert str(info.value) == f"input.align_model='models/align' {REFUSED}"


def test_a_language_is_one_whisper_knows_or_left_out() -> None:
    check_language(None)
    check_language("de")
    with pytest.raises(JobError) as info:
        check_language("english")
    message = str(info.value)
    assert message.startswith("input.language='english' is not allowed: choose one of af, am, ")
    assert message.endswith(", or leave it out to detect the language")


def test_an_english_only_model_hears_english_or_detects_it() -> None:
    check_english_only(False, "tiny.en", None)
    check_english_only(False, "tiny.en", "en")
    check_english_only(True, "base", "de")
    with pytest.raises(JobError) as info:
        check_english_only(False, "tiny.en", "de")
    assert str(info.value) == (
        "input.language='de' is not allowed with the English-only model 'tiny.en': choose en, "
        "or a multilingual model"
    )
