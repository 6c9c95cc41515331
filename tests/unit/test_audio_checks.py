"""The audio handler's checks that need no model: what `align_model` may name, the duration
limit's setting. (The limit itself is applied to really decoded audio in
tests/integration/test_audio_handler.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.errors import SettingsError
from handlers.audio import check_align_model
from handlers.config import load_config
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


def test_the_audio_duration_limit_is_a_setting_of_the_audio_worker_only() -> None:
    assert load_config({}, "audio").audio_max_duration_s == 4 * 3600
    assert load_config({"RUNPOD_SLIM_AUDIO_MAX_DURATION_S": "60"}).audio_max_duration_s == 60
    bad = {"RUNPOD_SLIM_AUDIO_MAX_DURATION_S": "4h"}
    assert load_config(bad, "storage").audio_max_duration_s == 4 * 3600
    with pytest.raises(SettingsError, match="RUNPOD_SLIM_AUDIO_MAX_DURATION_S='4h'"):
        load_config(bad, "audio")
