"""`ensure(settings)`: from a bare start to an activated env, in one place.

detect   NVML -> GpuInfo
plan     pure -> InstallPlan and env key
lookup   envs/<key>/manifest.json complete and its env whole?  (the warm path: no
         network, no resolver, no directory walk)
hydrate  a packed env: its parts streamed from the volume onto container disk, checked; for
         a worker (not `whole`), what its imports open first and the rest meanwhile
         (bootstrap/backfill.py), the env whole before its first job
lock     one installer per key; the others wait, then take the warm path
install  into staging (on container disk when envs are packed), with uv from the hashed
         lock (pip as fallback)
smoke    import what was installed, in a subprocess
publish  packed: parts into volume staging; manifest last; rename staging -> envs/<key>
activate the env first on sys.path

This module only orchestrates. bootstrap/store.py says where envs live (in place, or packed on
the volume) and what a start checks before it uses one; bootstrap/hydration.py brings a packed
env onto container disk (bootstrap/packed.py: the format); bootstrap/installing.py is the cold
path (lock, install, smoke) and bootstrap/publishing.py how an installed env is published. The
warm path imports none of those.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from . import store
from .cache import Layout
from .env import ReadyEnv
from .errors import BootstrapError
from .gpu import GpuInfo, detect_gpu, no_gpu, parse_gpu_spec
from .log import StartLog, default_log
from .nvml import load_pynvml
from .plan import FLASH_ATTN_RELEASE, FlashAttnRelease, InstallPlan, plan
from .profiles import LOCKS_DIR, Profile, profile_for
from .settings import GPU, Settings
from .start import Start

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from .runner import Runner


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
        profile = custom_profile(settings) if settings.custom else profile_for(settings)
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
    whole: bool = True,
) -> ReadyEnv:
    """Make sure the env for settings.handler_type is installed, then activate it.

    Not `whole`: a new container may get the env while the rest of its files are still being
    hydrated (bootstrap/backfill.py), to import meanwhile; call ReadyEnv.wait_whole() before
    the first job. The worker does; whatever else uses the env gets it whole.
    """
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
        ctx = Start(settings, layout, local, kind, start, environ, runner, which, sleep)
        with start.phase("lookup") as phase:
            found = store.find(layout, ctx.local, the_plan.env_key)
            phase.detail = found.damaged or found.detail
        env = found.env
        if env is None and found.manifest:
            from .hydration import hydrate_env

            env = hydrate_env(the_plan.env_key, found, ctx, whole=whole)
        if env is None:
            from .installing import install

            start.state("installing", f"{the_plan.env_key} into {layout.envs}")
            env = install(the_plan, ctx)
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
