"""A packed env on the volume, hydrated onto this container's disk (bootstrap/packed.py)."""

from __future__ import annotations

import os

from . import store
from .cache import discard
from .env import ReadyEnv
from .errors import CacheError, from_os_error
from .start import Start, failpoint

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from typing import Any


def hydrate_env(key: str, found: store.Found, ctx: Start) -> ReadyEnv | None:
    """The packed env `found` on this container's disk; None when it turned out damaged."""
    from .packed import DamagedEnvError, describe, hydrate

    assert found.manifest is not None
    env_dir = ctx.layout.env_dir(key)
    with ctx.log.phase("hydrate") as phase:
        store.sweep_local_staging(ctx.local)
        copy_big = _copy_big_files(found.manifest, ctx)
        staging, fd = store.new_local_staging(ctx.local, key)
        try:
            hydrate(
                env_dir,
                found.manifest["parts"],
                staging / "site",
                copy_big=copy_big,
                hot=found.manifest.get("hot"),
            )
            failpoint(ctx.settings, "after-hydrate")
        except DamagedEnvError as exc:
            discard(ctx.local, staging)
            phase.detail = f"damaged: {exc}"
            ctx.log.log(f"hydrate: env {key} on the volume is damaged ({exc}); it will be rebuilt")
            return None
        except OSError as exc:
            discard(ctx.local, staging)
            raise from_os_error(exc, f"hydrating env {key} onto {ctx.local.root}") from None
        except BaseException:
            discard(ctx.local, staging)
            raise
        local_env = store.finish_local(ctx.local, key, staging, fd, found.manifest_sha256)
        how = "large files copied" if copy_big else "large files linked to the volume"
        phase.detail = f"{describe(found.manifest['parts'])} ({how}) into {local_env}"
    return ReadyEnv(key, local_env, found.manifest, cold=False, home=env_dir)


def _copy_big_files(manifest: dict[str, Any], ctx: Start) -> bool:
    """Whether this start copies a packed env's large files, as asked and as disk allows."""
    from .packed import big_bytes, small_bytes

    parts = manifest["parts"]
    ctx.local.root.mkdir(parents=True, exist_ok=True)
    stat = os.statvfs(ctx.local.root)
    free = stat.f_bavail * stat.f_frsize
    small, big = small_bytes(parts), big_bytes(parts)
    if small > free:
        raise CacheError(
            f"{ctx.local.root} has {free / 1e6:.0f} MB free and the env's small files need "
            f"{small / 1e6:.0f} MB: point RUNPOD_SLIM_LOCAL_DIR at a larger disk, or give the "
            f"container more disk"
        )
    if ctx.settings.big_files != "copy":
        return False
    if small + big > free:
        ctx.log.log(
            f"hydrate: {ctx.local.root} has {free / 1e6:.0f} MB free, too little to copy the "
            f"env's {big / 1e6:.0f} MB of large files too; linking them to the volume instead"
        )
        return False
    return True
