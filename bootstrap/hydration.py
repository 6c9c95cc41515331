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


def hydrate_env(key: str, found: store.Found, ctx: Start, *, whole: bool = True) -> ReadyEnv | None:
    """The packed env `found` on this container's disk; None when it turned out damaged.

    Not `whole`: when the env has a rest (bootstrap/packed.py, split_rest), return once what
    the worker's imports open is in place, with the rest still being hydrated by a child
    (bootstrap/backfill.py); the caller must ReadyEnv.wait_whole() before it takes a job.
    """
    from .packed import DamagedEnvError, describe, has_rest, hydrate

    assert found.manifest is not None
    env_dir = ctx.layout.env_dir(key)
    local_env = ctx.local.env_dir(key)
    if local_env.is_dir():  # another process of this container may be filling it
        store.wait_hydrating(local_env)
        again = store.find(ctx.layout, ctx.local, key)
        if again.env is not None:
            return again.env
    parts = found.manifest["parts"]
    later = not whole and has_rest(parts)
    with ctx.log.phase("hydrate") as phase:
        store.sweep_local_staging(ctx.local)
        copy_big = _copy_big_files(found.manifest, ctx)
        staging, fd = store.new_local_staging(ctx.local, key)
        try:
            hydrate(
                env_dir,
                parts,
                staging / "site",
                copy_big=copy_big,
                hot=found.manifest.get("hot"),
                rest=not later,
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
        how = "large files copied" if copy_big else "large files linked to the volume"
        if not later:
            local_env = store.finish_local(ctx.local, key, staging, fd, found.manifest_sha256)
            phase.detail = f"{describe(parts)} ({how}) into {local_env}"
            return ReadyEnv(key, local_env, found.manifest, cold=False, home=env_dir)
        adopted = store.adopt_filling(ctx.local, key, staging)
        if adopted is None:  # another process of this container moved its copy in first
            discard(ctx.local, staging)
            os.close(fd)
            again = store.find(ctx.layout, ctx.local, key)
            return again.env or (hydrate_env(key, again, ctx) if again.manifest else None)
        phase.detail = (
            f"what the imports open, of {describe(parts)} ({how}), into {adopted}; the rest "
            f"meanwhile"
        )
    from .backfill import Backfill

    backfill = Backfill.start(
        cache_root=ctx.layout.root,
        key=key,
        local_env=adopted,
        manifest_sha256=found.manifest_sha256,
        lock_fd=fd,
        environ=dict(ctx.environ),
        log=ctx.log.log,
    )
    return ReadyEnv(key, adopted, found.manifest, cold=False, home=env_dir, backfill=backfill)


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
