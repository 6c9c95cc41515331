"""A handler's env, installed by the real bootstrap and activated in the test process."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from bootstrap import ensure, load_settings


@contextlib.contextmanager
def activated_env(handler: str, base: Path, **extra: str) -> Iterator[dict[str, str]]:
    """The worker's environment for `handler`, its env installed into `base`/cache and put
    first on sys.path (as handler.py's main() does) until the block ends."""
    (base / "volume").mkdir(exist_ok=True)
    environ = {
        # The machine's own settings and tokens never leak into a test's worker.
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RUNPOD_SLIM_", "BUCKET_")) and k != "HF_TOKEN"
        },
        "HANDLER_TYPE": handler,
        "RUNPOD_SLIM_CACHE": str(base / "cache"),
        "RUNPOD_SLIM_VOLUME": str(base / "volume"),
        **extra,
    }
    saved = list(sys.path)
    ensure(load_settings(environ), environ=environ)
    try:
        yield environ
    finally:
        sys.path[:] = saved
