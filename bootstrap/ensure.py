"""`ensure(settings)`: from a bare start to an activated env, in one place.

detect   NVML -> GpuInfo
plan     pure -> InstallPlan and env key
lookup   envs/<key>/manifest.json complete and its env whole?  (the warm path: no
         network, no resolver, no directory walk)
hydrate  a packed env: its parts streamed from the volume onto container disk, checked
lock     one installer per key; the others wait, then take the warm path
install  into staging (on container disk when envs are packed), with uv from the hashed
         lock (pip as fallback)
smoke    import what was installed, in a subprocess
publish  packed: parts into volume staging; manifest last; rename staging -> envs/<key>
activate the env first on sys.path

bootstrap/store.py says where envs live (in place, or packed on the volume), and what a
start checks before it uses one; bootstrap/packed.py how an env is packed and hydrated.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import store
from .cache import (
    Layout,
    dir_size,
    discard,
    empty_trash,
    new_staging,
    publish,
    remove_leftovers,
    set_aside,
    write_manifest,
)
from .env import ReadyEnv
from .errors import BootstrapError, CacheError, from_os_error
from .gpu import GpuInfo, detect_gpu, no_gpu, parse_gpu_spec
from .log import StartLog, default_log
from .nvml import load_pynvml
from .plan import FLASH_ATTN_RELEASE, FlashAttnRelease, InstallPlan, plan
from .profiles import LOCKS_DIR, PROFILES, Profile
from .settings import GPU, Settings

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from typing import Any

    from .installer import Runner
    from .lock import InstallLock

_LOCK_POLL_S = 0.5


def python_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def detect(
    settings: Settings, layout: Layout, environ: Mapping[str, str], log: Callable[[str], None]
) -> GpuInfo:
    """The GPU this start plans for: the override, or what NVML says."""
    if settings.gpu == "none":
        return no_gpu(f"{GPU}=none")
    if settings.gpu != "auto":
        return parse_gpu_spec(settings.gpu, variable=GPU)
    return detect_gpu(load_pynvml(settings, layout, log=log), environ)


def custom_profile(settings: Settings) -> Profile:
    """The profile of a user's own handler: its requirements file, the GPU stack if asked.

    The plan adds the smoke imports of the user's own distributions (their import names are
    read from what was installed) and drops the stack's where the user's pins replace it.
    """
    assert settings.custom is not None
    stack = settings.custom.gpu_stack
    return Profile(
        "custom",
        torch=stack,
        flash_attn=stack,
        imports=("runpod", *(("torch", "torchaudio", "torchvision") if stack else ())),
        requirements=settings.custom.requirements,
        stack_pins=settings.custom.stack_pins,
    )


def make_plan(
    settings: Settings,
    gpu: GpuInfo,
    *,
    profile: Profile | None = None,
    python: str | None = None,
    locks_dir: Path = LOCKS_DIR,
    flash_attn_release: FlashAttnRelease = FLASH_ATTN_RELEASE,
) -> InstallPlan:
    if profile is None:
        profile = custom_profile(settings) if settings.custom else PROFILES[settings.handler_type]
    return plan(
        profile,
        gpu,
        python or python_version(),
        settings,
        machine=os.uname().machine,
        locks_dir=locks_dir,
        flash_attn_release=flash_attn_release,
    )


def ensure(
    settings: Settings,
    *,
    environ: Mapping[str, str] = os.environ,
    log: Callable[[str], None] = default_log,
    gpu: GpuInfo | None = None,
    profile: Profile | None = None,
    locks_dir: Path = LOCKS_DIR,
    flash_attn_release: FlashAttnRelease = FLASH_ATTN_RELEASE,
    runner: Runner | None = None,
    which: Callable[[str], str | None] | None = None,
    activate: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> ReadyEnv:
    """Make sure the env for settings.handler_type is installed, then activate it."""
    start = StartLog(log)
    start.state("starting", f"handler={settings.handler_type} cache={settings.cache_root}")
    layout = Layout(settings.cache_root)
    try:
        with start.phase("detect") as phase:
            info = gpu if gpu is not None else detect(settings, layout, environ, log)
            phase.detail = info.describe()
        with start.phase("plan") as phase:
            the_plan = make_plan(
                settings,
                info,
                profile=profile,
                locks_dir=locks_dir,
                flash_attn_release=flash_attn_release,
            )
            phase.detail = f"{the_plan.env_key}; {the_plan.variant}: {the_plan.variant_reason}"
        for skipped in the_plan.skipped:
            log(f"plan: without {skipped.package}: {skipped.reason}")
        kind = store.choose(settings.env_store, layout.root, settings.local_root)
        local = Layout(settings.local_root)
        ctx = _Start(settings, layout, local, kind, start, environ, runner, which, sleep)
        with start.phase("lookup") as phase:
            found = store.find(layout, ctx.local, the_plan.env_key)
            phase.detail = found.damaged or found.detail
        env = found.env or (_hydrate(the_plan.env_key, found, ctx) if found.manifest else None)
        if env is None:
            start.state("installing", f"{the_plan.env_key} into {layout.envs}")
            env = _install(the_plan, ctx)
        if activate:
            with start.phase("activate") as phase:
                env.activate()
                phase.detail = str(env.site_dir)
    except BaseException as exc:
        said = str(exc) if isinstance(exc, BootstrapError) else f"{type(exc).__name__}: {exc}"
        start.state("failed", said)
        raise
    start.state("ready", f"env={env.key} {'cold' if env.cold else 'warm'} in {start.total():.3f} s")
    return env


@dataclass(frozen=True)
class _Start:
    """What one start works with, passed down instead of eight arguments."""

    settings: Settings
    layout: Layout  # the cache (on the volume, when there is one)
    local: Layout  # container disk: hydrated envs, and installs of packed envs
    store: str  # "packed" or "in-place" (bootstrap/store.py)
    log: StartLog
    environ: Mapping[str, str]
    runner: Runner | None  # None: the real one, imported on the cold path only
    which: Callable[[str], str | None] | None  # None: shutil.which, on the cold path only
    sleep: Callable[[float], None]


def _hydrate(key: str, found: store.Found, ctx: _Start) -> ReadyEnv | None:
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
            _failpoint(ctx.settings, "after-hydrate")
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


def _copy_big_files(manifest: dict[str, Any], ctx: _Start) -> bool:
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


def _install(the_plan: InstallPlan, ctx: _Start) -> ReadyEnv:
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
            env = _hydrate(key, found, ctx)
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


def _wait_for_lock(lock: InstallLock, key: str, ctx: _Start, damaged: set[str]) -> ReadyEnv | None:
    layout, log, timeout_s = ctx.layout, ctx.log.log, ctx.settings.lock_timeout_s
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        found = store.find(layout, ctx.local, key)
        if found.env is not None:
            return found.env
        if found.manifest and found.manifest_sha256 not in damaged:
            env = _hydrate(key, found, ctx)
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


def _install_into(the_plan: InstallPlan, ctx: _Start, held: list[InstallLock]) -> ReadyEnv:
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
                _publish_in_background(key, local_env, manifest, ctx, held)
                env_dir = ctx.layout.env_dir(key)
                return ReadyEnv(key, local_env, manifest, cold=True, home=env_dir)
            return _publish_in_place(key, staging, manifest, ctx)
        except OSError as exc:
            raise from_os_error(exc, f"publishing env {key} to {ctx.layout.envs}") from None
    except BaseException:
        discard(ctx.local if ctx.store == "packed" else ctx.layout, staging)
        raise


def _install_and_smoke(
    the_plan: InstallPlan, staging: Path, scratch: Layout, ctx: _Start
) -> dict[str, object]:
    """Install the plan into staging/site and smoke-test it; returns the env's manifest."""
    # The cold path's modules (ssl, urllib, zipfile) stay out of the warm path's import time.
    import shutil

    from .deadline import Deadline
    from .fetch import download
    from .installer import (
        find_tool,
        install_command,
        installed_distributions,
        requirements_file,
        run_install,
        run_streaming,
        smoke_test,
        tool_environ,
    )

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
    _failpoint(settings, "after-install")
    hot_pages = staging / "hot-pages.json" if ctx.store == "packed" else None
    with start.phase("smoke") as phase:
        smoke_test(
            the_plan, site, runner=runner, log=start.log, environ=ctx.environ, hot_pages=hot_pages
        )
        phase.detail = "ok"
    _failpoint(settings, "after-smoke")
    size, files = dir_size(site)
    manifest = _manifest(the_plan, tool.kind, began, size, files)
    manifest["resolved"] = installed_distributions(site)
    manifest["sentinels"] = store.sentinels(site)
    if hot_pages is not None:
        manifest["hot"] = _read_hot_pages(hot_pages)
    return manifest


def _read_hot_pages(path: Path) -> dict[str, object]:
    """What the smoke test's imports touched of the large files ({} when it could not tell)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _publish_in_place(
    key: str, staging: Path, manifest: dict[str, object], ctx: _Start
) -> ReadyEnv:
    env_dir = ctx.layout.env_dir(key)
    with ctx.log.phase("publish") as phase:
        write_manifest(staging, manifest)
        _failpoint(ctx.settings, "after-manifest")
        if publish(staging, env_dir):
            phase.detail = f"{env_dir} ({_size(manifest)})"
        else:
            discard(ctx.layout, staging)
            phase.detail = "another installer published it first; using theirs"
    return _published(key, ctx)


def _publish_in_background(
    key: str, local_env: Path, manifest: dict[str, object], ctx: _Start, held: list[InstallLock]
) -> None:
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
    key: str, local_env: Path, manifest: dict[str, object], ctx: _Start, lock: InstallLock
) -> None:
    """Pack the installed env onto the volume and publish it, then release the lock."""
    from .packed import describe, pack

    env_dir = ctx.layout.env_dir(key)
    parts_staging: Path | None = None
    try:
        with ctx.log.phase("publish") as phase:
            parts_staging = new_staging(ctx.layout, key)
            manifest["parts"] = parts = pack(local_env / "site", parts_staging)
            _failpoint(ctx.settings, "after-pack")
            write_manifest(parts_staging, manifest)
            _failpoint(ctx.settings, "after-manifest")
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


def _published(key: str, ctx: _Start) -> ReadyEnv:
    """The env another installer published while this one worked (a lost race)."""
    found = store.find(ctx.layout, ctx.local, key)
    env = found.env or (_hydrate(key, found, ctx) if found.manifest else None)
    if env is None:
        raise CacheError(
            f"{ctx.layout.env_dir(key)} was published by another installer and cannot be used: "
            f"{found.damaged or 'its parts are damaged'}"
        )
    return ReadyEnv(env.key, env.path, env.manifest, cold=True, home=env.home)


def _size(manifest: dict[str, object]) -> str:
    return f"{int(str(manifest['size_bytes'])) / 1e6:.0f} MB in {manifest['files']} files"


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


def _failpoint(settings: Settings, name: str) -> None:
    if settings.failpoint == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
