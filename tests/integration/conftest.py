"""Fixtures for the integration tests: a real MooseFS network volume.

From :mod:`tests.support.moosefs`, imported here so that every test in this
directory can ask for them (no ``pytest_plugins`` needed):

``moosefs``
    the session's volume: two mounts (two worker nodes), no added latency.
``moosefs_factory``
    ``factory(latency_ms=0.0, clients=2, via_proxy=None) -> MooseFS``, one
    cluster per set of arguments for the session.
``require_moosefs``
    for tests that start their own cluster with ``moosefs_cluster``: skips
    where MooseFS is not installed (fails under ``CI=true``).

And ``audio_env_cache``: the one cache the audio handler's modules install their env into.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.moosefs import moosefs, moosefs_factory, require_moosefs

__all__ = ["audio_env_cache", "moosefs", "moosefs_factory", "require_moosefs"]


@pytest.fixture(scope="session")
def audio_env_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's audio env cache, removed when the session ends, not before: modules a
    test module imported from the env (torch, whisperx) stay imported for the next one."""
    folder = tmp_path_factory.mktemp("audio-env")
    yield folder / "cache"
    shutil.rmtree(folder, ignore_errors=True)
