"""The audio handler's one model cache (handlers.audio.models.ModelCache), with plain objects.

The models here are plain objects: what is tested is which are kept, which leave, and that
each is loaded once, whatever loads it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import pytest

from handlers.audio.models import ModelCache


class Loads:
    """A loader per name that makes a new object and counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def of(self, name: str) -> Callable[[], object]:
        def load() -> object:
            self.calls.append(name)
            return object()

        return load


def test_a_model_is_loaded_once_and_kept() -> None:
    cache, loads = ModelCache({"whisper": 2}), Loads()
    first = cache.get("whisper", ("a",), loads.of("a"))
    assert cache.get("whisper", ("a",), loads.of("a")) is first
    assert loads.calls == ["a"]


def test_the_least_recently_used_of_a_kind_leaves_and_other_kinds_stay() -> None:
    cache, loads = ModelCache({"whisper": 2, "alignment": 1}), Loads()
    a = cache.get("whisper", ("a", "int8"), loads.of("a"))
    cache.get("alignment", ("en",), loads.of("en"))
    cache.get("whisper", ("b", "int8"), loads.of("b"))
    assert cache.get("whisper", ("a", "int8"), loads.of("a")) is a  # now b is the least recent
    cache.get("whisper", ("c", "int8"), loads.of("c"))
    assert cache.keys("whisper") == [("a", "int8"), ("c", "int8")]
    assert cache.keys("alignment") == [("en",)]  # whisper's limit is whisper's alone
    cache.get("alignment", ("de",), loads.of("de"))
    assert cache.keys("alignment") == [("de",)]
    assert cache.keys("whisper") == [("a", "int8"), ("c", "int8")]
    cache.get("whisper", ("b", "int8"), loads.of("b"))  # it left: loaded again
    assert loads.calls == ["a", "en", "b", "c", "de", "b"]


def test_a_failed_load_keeps_nothing_and_the_next_job_tries_again() -> None:
    cache, loads = ModelCache({"whisper": 1}), Loads()

    def broken() -> object:
        raise RuntimeError("no weights")

    with pytest.raises(RuntimeError, match="no weights"):
        cache.get("whisper", ("a",), broken)
    assert cache.keys("whisper") == []
    cache.get("whisper", ("a",), loads.of("a"))
    assert loads.calls == ["a"] and cache.keys("whisper") == [("a",)]


def test_forget_lets_a_kind_leave() -> None:
    cache, loads = ModelCache({"whisper": 2, "diarization": 1}), Loads()
    cache.get("whisper", ("a",), loads.of("a"))
    cache.get("diarization", ("token-1",), loads.of("d"))
    cache.forget("diarization")
    assert cache.keys("diarization") == [] and cache.keys("whisper") == [("a",)]


def test_an_unknown_kind_or_a_limit_under_one_is_refused() -> None:
    with pytest.raises(KeyError, match="no model kind 'whispr'; kinds: whisper"):
        ModelCache({"whisper": 1}).get("whispr", ("a",), object)
    with pytest.raises(ValueError, match="every kind needs room for one model"):
        ModelCache({"whisper": 0})


def _blocked_in_get(thread: threading.Thread) -> bool:
    """True when `thread` waits in ModelCache.get for another thread's load of the model."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "get" and frame.f_code.co_filename.endswith("models.py"):
            import linecache

            return "with loading" in linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return False


def test_jobs_asking_at_once_share_one_load() -> None:
    cache = ModelCache({"whisper": 2})
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []
    got: list[object] = []

    def slow_load() -> object:
        calls.append("load")
        started.set()
        assert release.wait(30), "the test never released the load"
        return object()

    def job() -> None:
        got.append(cache.get("whisper", ("large-v3", "int8"), slow_load))

    first = threading.Thread(target=job)
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=job)
    second.start()
    deadline = time.monotonic() + 30
    # The second job either waits for the first's load (right) or starts its own (wrong).
    while not _blocked_in_get(second) and len(calls) < 2:
        assert time.monotonic() < deadline, "the second job neither waited nor loaded"
        time.sleep(0.001)
    release.set()
    first.join(30)
    second.join(30)
    assert calls == ["load"]
    assert len(got) == 2 and got[0] is got[1]
