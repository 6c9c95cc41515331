"""Pure planning: (profile, GPU, Python, settings) -> InstallPlan, or a refusal.

No I/O beyond reading the lock file. Everything that is refused is refused here, before any
download, with what was found and what is needed: a driver too old for the variant, a GPU the
variant has no kernels for, flash-attn `required` where it cannot run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .catalog import DEFAULT_TORCH_BUILD, NO_TORCH, TORCH_BUILDS
from .custom_requirements import STACK_BUILDS, custom_lock
from .errors import PlanError
from .gpu import GpuInfo, format_cuda, parse_driver
from .profiles import LOCKS_DIR, TORCH_VERSION, Lock, Profile, read_lock
from .settings import FLASH_ATTN, TORCH_VARIANT, Settings

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from typing import Any

# 2: packed envs' archives became zstd (packed-3). A new key keeps workers of either version
# from taking the other's env on a shared volume for a damaged one.
KEY_SCHEMA = 2

# The oldest driver each CUDA build runs on, and the compute capabilities it has kernels for
# (oldest, newest major): read from the catalog, which says why.
MIN_DRIVER: dict[str, str] = {
    v: b.min_driver for v, b in TORCH_BUILDS.items() if b.min_driver is not None
}
KERNELS: dict[str, tuple[tuple[int, int], int]] = {
    v: b.kernels for v, b in TORCH_BUILDS.items() if b.kernels is not None
}


@dataclass(frozen=True)
class FlashAttnRelease:
    """One Flash Attention release's prebuilt wheels for one torch minor version."""

    version: str
    torch: str  # torch major.minor the wheels were built for
    cxx11abi: bool
    sha256: Mapping[str, str]  # Python tag ("cp310") -> sha256 of that wheel
    min_capability: tuple[int, int] = (8, 0)
    max_major: int = 9  # no Blackwell kernels checked for this release

    def filename(self, python_tag: str) -> str:
        abi = "TRUE" if self.cxx11abi else "FALSE"
        return (
            f"flash_attn-{self.version}+cu12torch{self.torch}cxx11abi{abi}"
            f"-{python_tag}-{python_tag}-linux_x86_64.whl"
        )


# 2.8.0 itself was never released with wheels; 2.8.0.post2 is the same code (only CI changed).
FLASH_ATTN_RELEASE = FlashAttnRelease(
    version="2.8.0.post2",
    torch="2.7",
    cxx11abi=True,  # torch 2.7.0 from the package index is built with the C++11 ABI
    sha256={
        "cp310": "8d7502817aacefb906a06d991b5c5777ecbc541aeefd76fb46466aaa787f0034",
        "cp311": "8ed71ac092f80b079d2e6043b769135904d6e834916cb6da7d372b394581447b",
    },
)


@dataclass(frozen=True)
class FlashAttnWheel:
    """The one prebuilt flash-attn wheel this plan installs."""

    version: str
    filename: str
    url: str
    sha256: str


@dataclass(frozen=True)
class Skipped:
    """A package the plan leaves out, and why (logged at start)."""

    package: str
    reason: str


@dataclass(frozen=True)
class InstallPlan:
    """Everything `install` needs, decided without touching the machine."""

    handler: str
    variant: str
    variant_reason: str
    python: str
    machine: str
    lock: Lock
    flash_attn: FlashAttnWheel | None
    skipped: tuple[Skipped, ...]
    env_key: str
    smoke_imports: tuple[str, ...]
    cuda_smoke: bool  # a real GPU is here, so the smoke test runs a CUDA op
    gpu: GpuInfo
    torch_index: str | None  # PyTorch's own index, for locks resolved at install time
    binary_only: bool = True  # wheels only; a custom handler's requirements may build sdists
    # A custom handler's own distributions: the smoke test imports their top-level modules.
    smoke_distributions: tuple[str, ...] = ()

    @property
    def requirements(self) -> tuple[str, ...]:
        extra = (f"flash-attn=={self.flash_attn.version}",) if self.flash_attn else ()
        return self.lock.requirements + extra

    def to_json(self) -> dict[str, Any]:
        return {
            "handler": self.handler,
            "variant": self.variant,
            "variant_reason": self.variant_reason,
            "python": self.python,
            "machine": self.machine,
            "env_key": self.env_key,
            "requirements": list(self.requirements),
            "flash_attn": None
            if self.flash_attn is None
            else {
                "version": self.flash_attn.version,
                "wheel": self.flash_attn.filename,
                "url": self.flash_attn.url,
                "sha256": self.flash_attn.sha256,
            },
            "skipped": [{"package": s.package, "reason": s.reason} for s in self.skipped],
            "lock": {
                "file": self.lock.path.name,
                "sha256": self.lock.sha256,
                "hashed": self.lock.hashed,
                "index": self.torch_index,
            },
            "gpu": self.gpu.to_json(),
        }


def plan(
    profile: Profile,
    gpu: GpuInfo,
    python: str,
    settings: Settings,
    *,
    machine: str = "x86_64",
    locks_dir: Path = LOCKS_DIR,
    flash_attn_release: FlashAttnRelease = FLASH_ATTN_RELEASE,
) -> InstallPlan:
    """Decide what to install for `profile` on this GPU and Python, or raise PlanError."""
    variant, reason = choose_variant(profile, gpu, settings.torch_variant)
    if variant in KERNELS and gpu.present:
        _check_kernels(variant, gpu)
        _check_driver(variant, gpu)
    imports = profile.imports
    if profile.requirements is not None:
        lock = custom_lock(
            profile.requirements,
            variant=variant,
            python=python,
            gpu_stack=profile.torch,
            stack_pins=profile.stack_pins,
            flash_attn_version=flash_attn_release.version if profile.flash_attn else None,
            locks_dir=locks_dir,
        )
        assert lock.user is not None
        if lock.user.stack != "added":  # the user's own torch, if any, is smoke-tested as theirs
            imports = tuple(name for name in imports if name not in STACK_BUILDS)
    else:
        lock = read_lock(profile.handler, variant, python, locks_dir)
    if lock.user is not None and lock.user.stack == "theirs":
        wheel, skipped = _without_flash_attn(profile, lock.user.own_stack_pins, settings)
    else:
        wheel, skipped = _flash_attn(
            profile, gpu, variant, python, machine, settings, flash_attn_release
        )
    # The cu128 and cpu builds live on PyTorch's own index: the lock names it, or (unhashed
    # locks made where that index was unreachable) the setting's index for the variant does.
    torch_index = lock.index
    build = TORCH_BUILDS.get(variant)
    if torch_index is None and not lock.hashed and build is not None:
        torch_index = build.index_url(settings.torch_index_url)
    return InstallPlan(
        handler=profile.handler,
        variant=variant,
        variant_reason=reason,
        python=python,
        machine=machine,
        lock=lock,
        flash_attn=wheel,
        skipped=skipped,
        env_key=env_key(profile.handler, variant, python, machine, lock, wheel),
        smoke_imports=imports + (("flash_attn",) if wheel else ()),
        cuda_smoke=variant in KERNELS and gpu.present and gpu.source == "nvml",
        gpu=gpu,
        torch_index=torch_index,
        binary_only=profile.requirements is None,
        smoke_distributions=lock.user.distributions if lock.user else (),
    )


def choose_variant(profile: Profile, gpu: GpuInfo, requested: str) -> tuple[str, str]:
    """The torch build to install, and a sentence saying why."""
    if not profile.torch:
        return NO_TORCH, f"{profile.handler} needs no PyTorch, so no CUDA wheel is installed"
    default = DEFAULT_TORCH_BUILD
    if requested != "auto":
        if requested in KERNELS and gpu.present and _newest_major(gpu) > KERNELS[requested][1]:
            raise PlanError(
                f"{TORCH_VARIANT}={requested} cannot run on {_gpu_words(gpu, newest=True)}: the "
                f"{requested} build has kernels for {_sm_range(requested)} only. Use "
                f"{TORCH_VARIANT}=auto or {_build_for(_newest_major(gpu))}"
            )
        return requested, f"set by {TORCH_VARIANT}={requested}"
    if not gpu.present:
        return default, (
            f"{gpu.describe()}: the {default} build from the package index runs on CPU "
            f"(set {TORCH_VARIANT}=cpu for the smaller CPU-only build from PyTorch's index)"
        )
    if _newest_major(gpu) > KERNELS[default][1]:
        newer = _build_for(_newest_major(gpu))
        return newer, (
            f"{_gpu_words(gpu, newest=True)} needs the {newer} build "
            f"({default} has kernels up to sm_{KERNELS[default][1]}0 only)"
        )
    return default, f"{_gpu_words(gpu)} is covered by the {default} build"


def _sm_range(variant: str) -> str:
    (oldest, newest_major) = KERNELS[variant]
    return f"sm_{oldest[0]}{oldest[1]} to sm_{newest_major}0"


def _build_for(major: int) -> str:
    """The first CUDA build with kernels for compute capability `major`.x."""
    for variant, (_, newest_major) in KERNELS.items():
        if major <= newest_major:
            return variant
    return list(KERNELS)[-1]


def env_key(
    handler: str, variant: str, python: str, machine: str, lock: Lock, wheel: FlashAttnWheel | None
) -> str:
    """A directory name that changes with every input that changes the installed bytes."""
    inputs = {
        "schema": KEY_SCHEMA,
        "lock_sha256": lock.sha256,
        "lock_platform": lock.platform,
        "flash_attn_sha256": wheel.sha256 if wheel else None,
        "python": python,
        "machine": machine,
        "variant": variant,
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return f"{handler}-{variant}-cp{python.replace('.', '')}-{digest[:16]}"


def _check_kernels(variant: str, gpu: GpuInfo) -> None:
    (oldest, newest_major) = KERNELS[variant]
    for device in gpu.devices:
        cc = device.compute_capability
        if cc < oldest or cc[0] > newest_major:
            raise PlanError(
                f"{device.name} (compute capability {cc[0]}.{cc[1]}) has no kernels in the "
                f"{variant} build of torch {TORCH_VERSION}, which covers "
                f"{oldest[0]}.{oldest[1]} to {newest_major}.x. Choose another GPU type"
                + (f" or {TORCH_VARIANT}=auto" if variant == DEFAULT_TORCH_BUILD else "")
            )


def _check_driver(variant: str, gpu: GpuInfo) -> None:
    needed = MIN_DRIVER[variant]
    if gpu.driver_version and parse_driver(gpu.driver_version) >= parse_driver(needed):
        return
    found = gpu.driver_version or "unknown"
    raise PlanError(
        f"NVIDIA driver {found} (CUDA <= {format_cuda(gpu.cuda_driver_version)}) is too old for "
        f"the {variant} build of torch {TORCH_VERSION}: it needs driver >= {needed}. On RunPod, "
        f"allow only CUDA {variant[2:4]}.{variant[4:]} or newer in the endpoint's CUDA versions "
        f"filter; the driver always comes from the host, never from the container"
    )


def _flash_attn(
    profile: Profile,
    gpu: GpuInfo,
    variant: str,
    python: str,
    machine: str,
    settings: Settings,
    release: FlashAttnRelease,
) -> tuple[FlashAttnWheel | None, tuple[Skipped, ...]]:
    if not profile.flash_attn:
        return None, ()
    tag = f"cp{python.replace('.', '')}"
    reason = _flash_attn_blocker(gpu, variant, tag, machine, settings.flash_attn, release)
    if reason is None:
        filename = release.filename(tag)
        url = f"{settings.flash_attn_mirror}/v{release.version}/{filename}"
        return FlashAttnWheel(release.version, filename, url, release.sha256[tag]), ()
    if settings.flash_attn == "required":
        raise PlanError(f"{FLASH_ATTN}=required, but flash-attn cannot be installed: {reason}")
    return None, (Skipped("flash-attn", reason),)


def _without_flash_attn(
    profile: Profile, own_pins: tuple[str, ...], settings: Settings
) -> tuple[None, tuple[Skipped, ...]]:
    """No flash-attn where the user's pins replaced the stack: its wheel is built for ours."""
    if not profile.flash_attn:
        return None, ()
    reason = (
        f"your requirements pin {' and '.join(own_pins)} instead of the GPU stack's "
        f"(RUNPOD_SLIM_CUSTOM_STACK_PINS=user), and the pinned flash-attn wheel is built for "
        f"torch {TORCH_VERSION}"
    )
    if settings.flash_attn == "required":
        raise PlanError(f"{FLASH_ATTN}=required, but flash-attn cannot be installed: {reason}")
    return None, (Skipped("flash-attn", reason),)


def _flash_attn_blocker(
    gpu: GpuInfo, variant: str, tag: str, machine: str, policy: str, release: FlashAttnRelease
) -> str | None:
    if policy == "off":
        return f"{FLASH_ATTN}=off"
    if not gpu.present:
        return f"{gpu.describe()}; PyTorch SDPA is used"
    if variant not in KERNELS:
        return f"the {variant} build of torch has no CUDA; PyTorch SDPA is used"
    oldest = gpu.min_capability or (0, 0)
    if oldest < release.min_capability:
        need = release.min_capability
        return (
            f"{_gpu_words(gpu)}: FlashAttention 2 needs compute capability "
            f"{need[0]}.{need[1]} (Ampere) or newer; PyTorch SDPA is used"
        )
    if _newest_major(gpu) > release.max_major:
        return (
            f"{_gpu_words(gpu, newest=True)}: no flash-attn {release.version} wheel with kernels "
            f"for it is pinned; PyTorch SDPA is used"
        )
    if machine != "x86_64":
        return f"flash-attn publishes wheels for x86_64 only, this is {machine}"
    if tag not in release.sha256:
        return (
            f"no pinned flash-attn {release.version} wheel for {tag} ({', '.join(release.sha256)})"
        )
    return None


def _newest_major(gpu: GpuInfo) -> int:
    return (gpu.max_capability or (0, 0))[0]


def _gpu_words(gpu: GpuInfo, *, newest: bool = False) -> str:
    pick = max if newest else min
    device = pick(gpu.devices, key=lambda d: d.compute_capability)
    cc = device.compute_capability
    return f"{device.name} (compute capability {cc[0]}.{cc[1]})"
