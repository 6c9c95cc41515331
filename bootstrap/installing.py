"""The cold path: lock, install, smoke-test and publish an env that is not in the cache."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import store
from .cache import (
    Layout,
    dir_size,
    discard,
    empty_trash,
    new_staging,
    remove_leftovers,
    set_aside,
)
from .env import ReadyEnv
from .errors import CacheError, from_os_error
from .hydration import hydrate_env
from .plan import InstallPlan
from .publishing import publish_in_background, publish_in_place
from .smoke import TOUCHED, read_touched
from .start import Start, failpoint

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from .lock import InstallLock

_LOCK_POLL_S = 0.5


def install(the_plan: InstallPlan, ctx: Start) -> ReadyEnv:
    """The env of `the_plan`, installed by this start, or by the worker whose lock it waited on."""
    settings, layout, start = ctx.settings, ctx.layout, ctx.log
    key = the_plan.env_key
    if settings.offline:
        raise CacheError(
            f"env {key} is not in the cache at {layout.envs} and RUNPOD_SLIM_OFFLINE is set: "
            f"start once with network access, or point RUNPOD_SLIM_CACHE at a warm cache"
        )
    from .lock import InstallLock

    layout.prepare()
    lock = InstallLock(layout.lock_file(key), log=start.log)
    damaged: set[str] = set()  # manifests whose parts failed their checks, by sha256
    with start.phase("lock wait") as phase:
        env = _wait_for_lock(lock, key, ctx, damaged)
        phase.detail = "another worker installed it" if env else "acquired"
    if env is not None:
        return env
    held = [lock]
    try:
        # Published between our lookup and our lock, or still there and damaged?
        found = store.find(layout, ctx.local, key)
        if found.env is None and found.manifest and found.manifest_sha256 not in damaged:
            env = hydrate_env(key, found, ctx)
            if env is not None:
                return env
            found = store.Found(damaged="its parts do not match its manifest")
        if found.env is not None:
            return found.env
        if found.damaged or found.manifest:
            why = found.damaged or "its parts are damaged"
            set_aside(layout, layout.env_dir(key), why, start.log)
        remove_leftovers(layout, key)
        empty_trash(layout)
        return _install_into(the_plan, ctx, held)
    finally:
        for still_held in held:  # empty when a background publish took the lock over
            still_held.release()


def _wait_for_lock(lock: InstallLock, key: str, ctx: Start, damaged: set[str]) -> ReadyEnv | None:
    layout, log, timeout_s = ctx.layout, ctx.log.log, ctx.settings.lock_timeout_s
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        found = store.find(layout, ctx.local, key)
        if found.env is not None:
            return found.env
        if found.manifest and found.manifest_sha256 not in damaged:
            env = hydrate_env(key, found, ctx)
            if env is not None:
                return env
            damaged.add(found.manifest_sha256)
        if lock.try_acquire():
            return None
        holder = lock.holder()
        if not announced:
            who = holder.describe() if holder else "another worker"
            log(f"lock: {who} is installing {key}; waiting for it")
            announced = True
        if time.monotonic() > deadline:
            raise CacheError(
                f"waited {timeout_s:.0f} s for {holder.describe() if holder else 'another worker'} "
                f"to install {key}; raise RUNPOD_SLIM_LOCK_TIMEOUT, or delete "
                f"{layout.lock_file(key)} if no worker is installing"
            )
        ctx.sleep(_LOCK_POLL_S)


def _install_into(the_plan: InstallPlan, ctx: Start, held: list[InstallLock]) -> ReadyEnv:
    """Install, smoke-test and publish; packed envs are installed on container disk.

    A packed env is ready as soon as it is installed and smoke-tested on container disk; a
    background thread then packs it onto the volume and publishes it, holding the install lock
    (taken over from `held`) until it is done, so that the workers waiting for it hydrate the
    published env. The process waits for that thread before it exits.
    """
    key = the_plan.env_key
    fd = -1
    if ctx.store == "packed":
        store.sweep_local_staging(ctx.local)
        staging, fd = store.new_local_staging(ctx.local, key)
        scratch = ctx.local  # uv's cache beside the install: hard links, not copies
    else:
        staging, scratch = new_staging(ctx.layout, key), ctx.layout
    try:
        try:
            manifest = _install_and_smoke(the_plan, staging, scratch, ctx)
        except OSError as exc:
            raise from_os_error(exc, f"installing env {key}") from None
        try:
            if ctx.store == "packed":
                local_env = store.adopt_local(ctx.local, key, staging, fd)
                publish_in_background(key, local_env, manifest, ctx, held)
                env_dir = ctx.layout.env_dir(key)
                return ReadyEnv(key, local_env, manifest, cold=True, home=env_dir)
            return publish_in_place(key, staging, manifest, ctx)
        except OSError as exc:
            raise from_os_error(exc, f"publishing env {key} to {ctx.layout.envs}") from None
    except BaseException:
        discard(ctx.local if ctx.store == "packed" else ctx.layout, staging)
        raise


def _install_and_smoke(
    the_plan: InstallPlan, staging: Path, scratch: Layout, ctx: Start
) -> dict[str, object]:
    """Install the plan into staging/site and smoke-test it; returns the env's manifest."""
    # The cold path's modules (ssl, urllib, zipfile) stay out of the warm path's import time.
    import shutil

    from .deadline import Deadline
    from .fetch import download
    from .installer import (
        install_command,
        installed_distributions,
        requirements_file,
        run_install,
        tool_environ,
    )
    from .runner import run_streaming
    from .smoke import smoke_test
    from .tools import find_tool

    settings, layout, start = ctx.settings, ctx.layout, ctx.log
    runner = ctx.runner or run_streaming
    site = staging / "site"
    began = time.time()
    deadline = Deadline.start(settings.install_timeout_s)
    with start.phase("download and install") as phase:
        tool = find_tool(
            settings, layout, log=start.log, which=ctx.which or shutil.which, deadline=deadline
        )
        wheel = None
        if the_plan.flash_attn:
            fa = the_plan.flash_attn
            wheel = download(
                fa.url,
                layout.wheels / fa.sha256[:16] / fa.filename,
                fa.sha256,
                ca_bundle=settings.ca_bundle,
                retries=settings.retries,
                log=start.log,
                deadline=deadline,
            )
        requirements = requirements_file(the_plan, staging, wheel)
        argv = install_command(tool, the_plan, site, requirements, settings, sys.executable)
        run_install(
            argv,
            tool_environ(ctx.environ, settings, scratch),
            retries=settings.retries,
            runner=runner,
            log=start.log,
            cwd=staging,
            deadline=deadline,
        )
        # Counted from what landed: a custom env's requirements resolve to more than they name.
        phase.detail = f"{len(installed_distributions(site))} packages with {tool.kind}"
    failpoint(settings, "after-install")
    touched = staging / TOUCHED if ctx.store == "packed" else None
    with start.phase("smoke") as phase:
        smoke_test(
            the_plan, site, runner=runner, log=start.log, environ=ctx.environ, touched=touched
        )
        phase.detail = "ok"
    failpoint(settings, "after-smoke")
    size, files = dir_size(site)
    manifest = _manifest(the_plan, tool.kind, began, size, files)
    manifest["resolved"] = installed_distributions(site)
    manifest["sentinels"] = store.sentinels(site)
    if touched is not None:
        manifest["hot"] = read_touched(touched).pages
    return manifest


def _manifest(
    the_plan: InstallPlan, installer: str, began: float, size: int, files: int
) -> dict[str, object]:
    data = the_plan.to_json()
    data.update(
        key=the_plan.env_key,
        installer=installer,
        install_seconds=round(time.time() - began, 3),
        published_at=time.time(),
        size_bytes=size,
        files=files,
    )
    return data
