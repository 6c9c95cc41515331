"""One cache for every model the audio handler loads: Whisper, alignment and diarization.

Each kind has its own size limit (RUNPOD_SLIM_AUDIO_MAX_MODELS for Whisper); when a kind is
full, its least recently used model leaves. A model is loaded once: a second job that asks
for one being loaded waits for that load instead of starting its own (two copies of a large
model at once is how a worker runs out of memory). A load that fails keeps nothing, so the
next job tries again. Thread-safe: jobs run in threads.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TypeVar, cast

LOG = logging.getLogger("runpod-slim")

T = TypeVar("T")
# A model's key within its kind: its first item is what the log may show (never a secret).
Key = tuple[str, ...]


class ModelCache:
    """Models kept in memory by (kind, key), at most `limits[kind]` of a kind."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        if any(limit < 1 for limit in limits.values()):
            raise ValueError(f"every kind needs room for one model: {dict(limits)}")
        self.limits = dict(limits)
        self._models: OrderedDict[tuple[str, Key], object] = OrderedDict()  # least recent first
        self._loading: dict[tuple[str, Key], threading.Lock] = {}
        self._lock = threading.Lock()  # guards both dicts; never held while a model loads

    def get(self, kind: str, key: Key, load: Callable[[], T]) -> T:
        """The model under (kind, key): kept from before, or loaded now by `load()` and kept."""
        if kind not in self.limits:
            raise KeyError(f"no model kind {kind!r}; kinds: {', '.join(sorted(self.limits))}")
        entry = (kind, key)
        with self._lock:
            found = self._take(entry)
            if found is not None:
                return cast(T, found)
            loading = self._loading.setdefault(entry, threading.Lock())
        with loading:  # one load per entry at a time; the others wait here for it
            with self._lock:
                found = self._take(entry)
                if found is not None:
                    return cast(T, found)
            try:
                model = load()
            finally:
                with self._lock:
                    self._loading.pop(entry, None)
            if model is None:
                raise ValueError(f"loading the {kind} model {key[0]!r} gave nothing")
            with self._lock:
                self._models[entry] = model
                evicted = self._evict(kind)
        if evicted:
            gc.collect()  # what left holds large buffers: free them before the next job
        return model

    def keys(self, kind: str) -> list[Key]:
        """The keys of `kind`'s models in memory, the least recently used first."""
        with self._lock:
            return [key for k, key in self._models if k == kind]

    def forget(self, kind: str) -> None:
        """Let every model of `kind` leave memory (one that loads again is loaded anew)."""
        with self._lock:
            for entry in [e for e in self._models if e[0] == kind]:
                del self._models[entry]
        gc.collect()

    def _take(self, entry: tuple[str, Key]) -> object | None:
        model = self._models.get(entry)
        if model is not None:
            self._models.move_to_end(entry)
        return model

    def _evict(self, kind: str) -> list[Key]:
        mine = [e for e in self._models if e[0] == kind]
        evicted = []
        for entry in mine[: max(0, len(mine) - self.limits[kind])]:
            del self._models[entry]
            evicted.append(entry[1])
            LOG.info("audio: the %s model %s leaves memory", kind, entry[1][0])
        return evicted
