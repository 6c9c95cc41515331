"""Model weights fetched once from the Hugging Face Hub into the volume, whole or not at all.

The torch engines (kokoro, qwen) read their weights from `<volume>/models/...`. When they are
not there, the first worker that needs them downloads them into a staging folder beside the
target and moves the files in, the file that marks a model complete (its config.json) last: a
download cut short leaves no file under its final name that looks like a finished model, and
workers racing each other only replace a file with an identical one.

The token is HF_TOKEN from the environment: passed to the Hub client, never logged, never part
of an error. With HF_HUB_OFFLINE or RUNPOD_SLIM_OFFLINE set, nothing is downloaded and the
engines say which files to put where instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import JobError

HF_TOKEN = "HF_TOKEN"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "RUNPOD_SLIM_OFFLINE")
MARKER = "config.json"  # moved in last: its presence says the rest is there


def offline(environ: Mapping[str, str]) -> bool:
    """Whether downloads are off (HF_HUB_OFFLINE or RUNPOD_SLIM_OFFLINE set to a true value)."""
    return any(
        environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in OFFLINE_VARIABLES
    )


def download(
    repo: str,
    patterns: Sequence[str],
    into: Path,
    environ: Mapping[str, str],
    *,
    advice: str,
) -> None:
    """The files of Hub repository `repo` that match `patterns`, put under `into`.

    A failure is a JobError: `advice` (what to put where by hand) and a short reason; the
    token and the staging folder's path are never in it, and the staging folder is removed.
    """
    from huggingface_hub import snapshot_download

    into.parent.mkdir(parents=True, exist_ok=True)
    staging = into.parent / f".{into.name}.download-{uuid.uuid4().hex[:12]}"
    token = environ.get(HF_TOKEN) or None
    try:
        try:
            snapshot_download(
                repo_id=repo, allow_patterns=list(patterns), local_dir=staging, token=token
            )
        except Exception as exc:  # the Hub client's many errors: all say the same to a job
            reason = _reason(exc, token, staging)
            raise JobError(f"{advice} (downloading them from {repo} failed: {reason})") from None
        _move_in(staging, into)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_in(
    staging: Path, into: Path, replace: Callable[[Path, Path], object] = os.replace
) -> None:
    """Every downloaded file under its final name; config.json files last, the top one last
    of all (the Hub client's own .cache folder stays behind)."""
    files = [
        path
        for path in staging.rglob("*")
        if path.is_file() and ".cache" not in path.relative_to(staging).parts
    ]
    files.sort(key=lambda path: (path.name == MARKER, -len(path.parts), str(path)))
    for path in files:
        target = into / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        replace(path, target)


def _reason(exc: BaseException, token: str | None, staging: Path) -> str:
    """The first line of an error, without the token or the staging path, shortened."""
    text = (str(exc).strip().splitlines() or ["no reason given"])[0]
    if token:
        text = text.replace(token, "***")
    text = text.replace(str(staging), "the volume")
    return text if len(text) <= 160 else text[:157] + "..."
