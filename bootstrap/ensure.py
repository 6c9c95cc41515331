"""`ensure(settings)`: from a bare start to an activated env, in one place.

detect   NVML -> GpuInfo
plan     pure -> InstallPlan and env key
lookup   envs/<key>/manifest.json complete?  -> activate (the warm path: no network,
         no resolver, no directory walk)
lock     one installer per key; the others wait, then take the warm path
install  into staging, with uv from the hashed lock (pip as fallback)
smoke    import what was installed, in a subprocess
publish  manifest last, then rename staging -> envs/<key>
activate the env first on sys.path
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .cache import (
    Layout,
    dir_size,
    discard,
    empty_trash,
    new_staging,
    publish,
    read_manifest,
    remove_leftovers,
    write_manifest,
)
from .env import ReadyEnv
from .errors import CacheError
from .gpu import GpuInfo, detect_gpu, no_gpu, parse_gpu_spec
from .log import StartLog, default_log
from .nvml import load_pynvml
from .plan import FLASH_ATTN_RELEASE, FlashAttnRelease, InstallPlan, plan
from .profiles import LOCKS_DIR, PROFILES, Profile
from .settings import GPU, Settings

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
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
    """The profile of a user's own handler: its requirements file, the GPU stack if asked."""
    assert settings.custom is not None
    stack = settings.custom.gpu_stack
    return Profile(
        "custom",
        torch=stack,
        flash_attn=stack,
        imports=("runpod", *(("torch",) if stack else ())),
        requirements=settings.custom.requirements,
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
        with start.phase("lookup") as phase:
            env = _warm(layout, the_plan.env_key)
            phase.detail = "warm, found in the cache" if env else "cold, not in the cache"
        if env is None:
            start.state("installing", f"{the_plan.env_key} into {layout.envs}")
            ctx = _Start(settings, layout, start, environ, runner, which, sleep)
            env = _install(the_plan, ctx)
        if activate:
            with start.phase("activate") as phase:
                env.activate()
                phase.detail = str(env.site_dir)
    except BaseException as exc:
        start.state("failed", f"{type(exc).__name__}: {exc}")
        raise
    start.state("ready", f"env={env.key} {'cold' if env.cold else 'warm'} in {start.total():.3f} s")
    return env


@dataclass(frozen=True)
class _Start:
    """What one start works with, passed down instead of eight arguments."""

    settings: Settings
    layout: Layout
    log: StartLog
    environ: Mapping[str, str]
    runner: Runner | None  # None: the real one, imported on the cold path only
    which: Callable[[str], str | None] | None  # None: shutil.which, on the cold path only
    sleep: Callable[[float], None]


def _warm(layout: Layout, key: str) -> ReadyEnv | None:
    env_dir = layout.env_dir(key)
    manifest = read_manifest(env_dir)
    return ReadyEnv(key, env_dir, manifest, cold=False) if manifest else None


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
    with start.phase("lock wait") as phase:
        env = _wait_for_lock(lock, key, ctx)
        phase.detail = "another worker installed it" if env else "acquired"
    if env is not None:
        return env
    staging: Path | None = None
    try:
        env = _warm(layout, key)  # published between our lookup and our lock
        if env is not None:
            return env
        remove_leftovers(layout, key)
        empty_trash(layout)
        staging = new_staging(layout, key)
        env = _install_into(the_plan, staging, ctx)
        staging = None
        return env
    finally:
        if staging is not None:
            discard(layout, staging)
        lock.release()


def _wait_for_lock(lock: InstallLock, key: str, ctx: _Start) -> ReadyEnv | None:
    layout, log, timeout_s = ctx.layout, ctx.log.log, ctx.settings.lock_timeout_s
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        env = _warm(layout, key)
        if env is not None:
            return env
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


def _install_into(the_plan: InstallPlan, staging: Path, ctx: _Start) -> ReadyEnv:
    # The cold path's modules (ssl, urllib, zipfile) stay out of the warm path's import time.
    import shutil

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
    with start.phase("download and install") as phase:
        tool = find_tool(settings, layout, log=start.log, which=ctx.which or shutil.which)
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
            )
        requirements = requirements_file(the_plan, staging, wheel)
        argv = install_command(tool, the_plan, site, requirements, settings, sys.executable)
        run_install(
            argv,
            tool_environ(ctx.environ, settings, layout),
            retries=settings.retries,
            runner=runner,
            log=start.log,
            cwd=staging,
        )
        phase.detail = f"{len(the_plan.requirements)} packages with {tool.kind}"
    _failpoint(settings, "after-install")
    with start.phase("smoke") as phase:
        smoke_test(the_plan, site, runner=runner, log=start.log, environ=ctx.environ)
        phase.detail = "ok"
    _failpoint(settings, "after-smoke")
    with start.phase("publish") as phase:
        size, files = dir_size(site)
        manifest = _manifest(the_plan, tool.kind, began, size, files)
        manifest["resolved"] = installed_distributions(site)
        write_manifest(staging, manifest)
        _failpoint(settings, "after-manifest")
        env_dir = layout.env_dir(the_plan.env_key)
        if publish(staging, env_dir):
            phase.detail = f"{env_dir} ({size / 1e6:.0f} MB in {files} files)"
        else:
            discard(layout, staging)
            phase.detail = "another installer published it first; using theirs"
    published = read_manifest(env_dir)
    if published is None:
        raise CacheError(f"{env_dir} was published without a complete manifest")
    return ReadyEnv(the_plan.env_key, env_dir, published, cold=True)


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
