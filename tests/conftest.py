"""Shared fixtures: settings from a dict, and small lock files written into tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bootstrap.profiles import PROFILES
from bootstrap.settings import Settings, load_settings
from tests.support.builders import write_lock


@pytest.fixture
def locks_dir(tmp_path: Path) -> Path:
    """One small lock per (handler, variant, Python 3.10/3.11), as the planner expects."""
    directory = tmp_path / "locks"
    directory.mkdir()
    for profile in PROFILES.values():
        for variant in profile.variants:
            for python in ("3.10", "3.11"):
                hashed = variant in ("none", "cu126")
                body = f"{profile.handler}-pkg==1.0 \\\n    --hash=sha256:{'0' * 64}\n"
                write_lock(
                    directory,
                    profile.handler,
                    variant,
                    python,
                    body,
                    hashed=hashed,
                    index=None if hashed else f"https://torch.example/whl/{variant}",
                )
    return directory


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings from keyword env vars, with the cache in tmp_path and no volume."""

    def make(**env: str) -> Settings:
        base = {
            "RUNPOD_SLIM_VOLUME": str(tmp_path / "no-volume"),
            "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
            "HOME": str(tmp_path),
        }
        return load_settings({**base, **env})

    return make
