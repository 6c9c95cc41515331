"""Publishing an installed env: in place (a rename), or packed onto the volume in the background.

Either way the manifest is written last and the env appears by one atomic rename, so no reader
ever sees it half-written; a packed env's installer is ready on its local copy first, and a
background thread packs and publishes it while holding the install lock.
"""

from __future__ import annotations

from pathlib import Path

from . import store
from .cache import discard, new_staging, publish, write_manifest
from .env import ReadyEnv
from .errors import BootstrapError, CacheError
from .hydration import hydrate_env
from .start import Start, failpoint

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from .lock import InstallLock


def publish_in_place(key: str, staging: Path, manifest: dict[str, object], ctx: Start) -> ReadyEnv:
    """Write the manifest last and rename staging into envs/<key>; the env published."""
    env_dir = ctx.layout.env_dir(key)
    with ctx.log.phase("publish") as phase:
        write_manifest(staging, manifest)
        failpoint(ctx.settings, "after-manifest")
        if publish(staging, env_dir):
            phase.detail = f"{env_dir} ({_size(manifest)})"
        else:
            discard(ctx.layout, staging)
            phase.detail = "another installer published it first; using theirs"
    return published(key, ctx)


def publish_in_background(
    key: str, local_env: Path, manifest: dict[str, object], ctx: Start, held: list[InstallLock]
) -> None:
    """Pack and publish the local env on a thread that takes over the install lock."""
    import threading

    lock = held.pop()  # the thread releases it
    thread = threading.Thread(
        target=_publish_packed,
        args=(key, local_env, manifest, ctx, lock),
        name="runpod-slim-publish",
        daemon=False,  # a one-shot process finishes publishing before it exits
    )
    thread.start()


def _publish_packed(
    key: str, local_env: Path, manifest: dict[str, object], ctx: Start, lock: InstallLock
) -> None:
    """Pack the installed env onto the volume and publish it, then release the lock."""
    from .packed import describe, pack, scan
    from .smoke import TOUCHED, read_touched

    env_dir = ctx.layout.env_dir(key)
    parts_staging: Path | None = None
    try:
        with ctx.log.phase("publish") as phase:
            parts_staging = new_staging(ctx.layout, key)
            site = local_env / "site"
            touched = read_touched(local_env / TOUCHED)
            loaded = touched.modules | touched.opened if touched.modules else None
            manifest["parts"] = parts = pack(site, parts_staging, scan(site, loaded))
            failpoint(ctx.settings, "after-pack")
            write_manifest(parts_staging, manifest)
            failpoint(ctx.settings, "after-manifest")
            if publish(parts_staging, env_dir):
                parts_staging = None
                phase.detail = f"{env_dir} ({_size(manifest)}) as {describe(parts)}"
            else:
                phase.detail = "another installer published it first; this copy stays local"
        found = store.find(ctx.layout, ctx.local, key)
        if found.manifest_sha256:
            store.mark_hydrated(local_env, key, found.manifest_sha256)
    except Exception as exc:
        said = str(exc) if isinstance(exc, BootstrapError) else f"{type(exc).__name__}: {exc}"
        ctx.log.log(
            f"publish: failed ({said}); this worker goes on with its local copy, and the next "
            f"start installs {key} again"
        )
    finally:
        if parts_staging is not None:
            discard(ctx.layout, parts_staging)
        lock.release()


def published(key: str, ctx: Start) -> ReadyEnv:
    """The env another installer published while this one worked (a lost race)."""
    found = store.find(ctx.layout, ctx.local, key)
    env = found.env or (hydrate_env(key, found, ctx) if found.manifest else None)
    if env is None:
        raise CacheError(
            f"{ctx.layout.env_dir(key)} was published by another installer and cannot be used: "
            f"{found.damaged or 'its parts are damaged'}"
        )
    return ReadyEnv(env.key, env.path, env.manifest, cold=True, home=env.home)


def _size(manifest: dict[str, object]) -> str:
    return f"{int(str(manifest['size_bytes'])) / 1e6:.0f} MB in {manifest['files']} files"
