"""Every environment variable the worker reads, in one frozen Settings.

`load_settings(environ)` is the one place that reads the environment, and it takes the mapping
as an argument so that tests pass a dict. A bad value is refused with the variable, the value
and what is allowed. Nothing here touches the network or the GPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import catalog
from .errors import SettingsError
from .suggest import did_you_mean

HANDLER_TYPE = "HANDLER_TYPE"
VOLUME = "RUNPOD_SLIM_VOLUME"
CACHE = "RUNPOD_SLIM_CACHE"
GPU = "RUNPOD_SLIM_GPU"
TORCH_VARIANT = "RUNPOD_SLIM_TORCH_VARIANT"
FLASH_ATTN = "RUNPOD_SLIM_FLASH_ATTN"
INDEX_URL = "RUNPOD_SLIM_INDEX_URL"
TORCH_INDEX_URL = "RUNPOD_SLIM_TORCH_INDEX_URL"
FIND_LINKS = "RUNPOD_SLIM_FIND_LINKS"
FLASH_ATTN_MIRROR = "RUNPOD_SLIM_FLASH_ATTN_MIRROR"
OFFLINE = "RUNPOD_SLIM_OFFLINE"
INSTALLER = "RUNPOD_SLIM_INSTALLER"
LOCK_TIMEOUT = "RUNPOD_SLIM_LOCK_TIMEOUT"
INSTALL_TIMEOUT = "RUNPOD_SLIM_INSTALL_TIMEOUT"
RETRIES = "RUNPOD_SLIM_RETRIES"
KEEP_ENVS = "RUNPOD_SLIM_KEEP_ENVS"
WHEELHOUSE = "RUNPOD_SLIM_WHEELHOUSE"
FAILPOINT = "RUNPOD_SLIM_FAILPOINT"
LOCAL_DIR = "RUNPOD_SLIM_LOCAL_DIR"
ENV_STORE = "RUNPOD_SLIM_ENV_STORE"
BIG_FILES = "RUNPOD_SLIM_BIG_FILES"
CUSTOM_HANDLER = "RUNPOD_SLIM_CUSTOM_HANDLER"
CUSTOM_DIR = "RUNPOD_SLIM_CUSTOM_DIR"
CUSTOM_REQUIREMENTS = "RUNPOD_SLIM_CUSTOM_REQUIREMENTS"
CUSTOM_GPU_STACK = "RUNPOD_SLIM_CUSTOM_GPU_STACK"
CUSTOM_STACK_PINS = "RUNPOD_SLIM_CUSTOM_STACK_PINS"

HANDLERS = catalog.handler_types()  # as this build was imported; load_settings reads it anew
DEFAULT_HANDLER = catalog.DEFAULT_HANDLER
DEFAULT_VOLUME = "/runpod-volume"
DEFAULT_INDEX_URL = "https://pypi.org/simple"
DEFAULT_TORCH_INDEX_URL = catalog.DEFAULT_TORCH_INDEX_URL
DEFAULT_FLASH_ATTN_MIRROR = "https://github.com/Dao-AILab/flash-attention/releases/download"
# Wheels baked into the image (pynvml, uv) so that a first start needs no extra round trip.
DEFAULT_WHEELHOUSE = "/opt/runpod-slim/wheels"
# RunPod stops a worker that is not ready within its init timeout, 7 minutes by default. A cold
# install of the biggest stack (audio: torch, CUDA wheels, whisperx) took 60 to 230 s here;
# 300 s leaves it room on a slow network and leaves two minutes of the init timeout for the
# rest of the start (detect, smoke test, publish, the handler's setup) and for the error.
DEFAULT_INSTALL_TIMEOUT_S = 300.0

TORCH_VARIANTS = ("auto", *catalog.TORCH_BUILDS)
FLASH_ATTN_POLICIES = ("auto", "off", "required")
INSTALLERS = ("auto", "uv", "pip")
# How envs are kept in the cache: packed (a few large files on the volume, hydrated onto
# container disk at start), in place (used where they are), or auto: packed when the cache is
# on another file system than the local dir, i.e. on a network volume (see bootstrap/packed.py).
ENV_STORES = ("auto", "packed", "in-place")
# A packed env's large files on container disk: linked to the volume, or copied there at start.
BIG_FILE_MODES = ("link", "copy")
# Whose pins win when a custom handler's requirements pin a GPU-stack package (torch,
# torchvision, a CUDA wheel...) to another version than the stack's: the stack's (the
# requirements are refused, naming both pins), or the user's (the stack is left out).
STACK_PIN_POLICIES = ("stack", "user")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class CustomHandler:
    """A user's existing RunPod function, served unchanged in its own cached env."""

    target: str  # "module:function"
    directory: Path  # where the module (and, by default, requirements.txt) live
    requirements: Path
    gpu_stack: bool  # add torch, torchaudio, torchvision, the CUDA wheels and flash-attn
    stack_pins: str = "stack"  # STACK_PIN_POLICIES: whose pins win on a conflict


@dataclass(frozen=True)
class Settings:
    """What the bootstrap and the worker were asked to do, parsed and checked."""

    handler_type: str
    volume: Path
    cache_root: Path
    gpu: str  # "auto", "none", or a spec "NAME:MAJOR.MINOR:DRIVER"
    torch_variant: str
    flash_attn: str
    index_url: str
    torch_index_url: str
    find_links: tuple[str, ...]
    flash_attn_mirror: str
    offline: bool
    installer: str
    lock_timeout_s: float
    retries: int
    keep_envs: int
    wheelhouse: Path
    ca_bundle: str | None
    local_root: Path = Path("/tmp/runpod-slim-local")  # container disk: hydrated envs, installs
    env_store: str = "auto"
    big_files: str = "link"
    custom: CustomHandler | None = None  # HANDLER_TYPE=custom: the user's own function
    # Tests only: the bootstrap SIGKILLs itself at this point of an install (see ensure.py).
    failpoint: str | None = None
    install_timeout_s: float = DEFAULT_INSTALL_TIMEOUT_S  # one deadline for the whole install
    # The catalog env the handler runs in (tts: by its engine); "custom" for a custom handler.
    profile: str = ""

    def __post_init__(self) -> None:
        if not self.profile:  # Settings built by hand (tests): the handler's default env
            object.__setattr__(self, "profile", _default_env(self.handler_type))

    @property
    def volume_attached(self) -> bool:
        """True when the network volume's mount point exists."""
        return self.volume.is_dir()


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping, refusing bad values with a clear message."""
    volume = _volume(environ)
    handler_type = choice_setting(environ, HANDLER_TYPE, DEFAULT_HANDLER, catalog.handler_types())
    return Settings(
        handler_type=handler_type,
        volume=volume,
        cache_root=_cache_root(environ, volume),
        gpu=_gpu(environ),
        torch_variant=choice_setting(environ, TORCH_VARIANT, "auto", TORCH_VARIANTS),
        flash_attn=choice_setting(environ, FLASH_ATTN, "auto", FLASH_ATTN_POLICIES),
        index_url=_url(environ, INDEX_URL, DEFAULT_INDEX_URL),
        torch_index_url=_url(environ, TORCH_INDEX_URL, DEFAULT_TORCH_INDEX_URL),
        find_links=tuple(environ.get(FIND_LINKS, "").replace(",", " ").split()),
        flash_attn_mirror=_url(environ, FLASH_ATTN_MIRROR, DEFAULT_FLASH_ATTN_MIRROR),
        offline=_flag(environ, OFFLINE),
        installer=choice_setting(environ, INSTALLER, "auto", INSTALLERS),
        lock_timeout_s=_number(environ, LOCK_TIMEOUT, 1800.0, minimum=1.0),
        install_timeout_s=_number(environ, INSTALL_TIMEOUT, DEFAULT_INSTALL_TIMEOUT_S, minimum=1.0),
        retries=_whole(environ, RETRIES, 3, minimum=0),
        keep_envs=_whole(environ, KEEP_ENVS, 3, minimum=1),
        wheelhouse=Path(environ.get(WHEELHOUSE) or DEFAULT_WHEELHOUSE),
        ca_bundle=_ca_bundle(environ),
        local_root=_local_root(environ),
        env_store=choice_setting(environ, ENV_STORE, "auto", ENV_STORES),
        big_files=choice_setting(environ, BIG_FILES, "link", BIG_FILE_MODES),
        failpoint=environ.get(FAILPOINT) or None,
        custom=_custom(environ) if handler_type == catalog.CUSTOM else None,
        profile=_env(environ, handler_type),
    )


__all__ = ["Settings", "choice_setting", "did_you_mean", "load_settings"]


def _env(environ: Mapping[str, str], handler_type: str) -> str:
    """The catalog env `handler_type` runs in, chosen by its setting where it has one."""
    if handler_type == catalog.CUSTOM:
        return catalog.CUSTOM
    choice = catalog.HANDLERS[handler_type].env
    if isinstance(choice, str):
        return choice
    return choice.envs[choice_setting(environ, choice.variable, choice.default, tuple(choice.envs))]


def _default_env(handler_type: str) -> str:
    handler = catalog.HANDLERS.get(handler_type)
    if handler is None:
        return handler_type  # custom, or a name a test made up
    choice = handler.env
    return choice if isinstance(choice, str) else choice.envs[choice.default]


def choice_setting(
    environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]
) -> str:
    """The variable's value, lower-cased, if it is one of `choices`; else a SettingsError."""
    value = environ.get(name, "").strip() or default
    if value.lower() in choices:
        return value.lower()
    raise SettingsError(
        name, value, f"choose one of {', '.join(choices)}{did_you_mean(value, choices)}"
    )


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(name, value, "use 1/true/yes/on or 0/false/no/off")


def _number(environ: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    # nan compares false with everything and inf never ends a wait: both are refused.
    if not (math.isfinite(value) and value >= minimum):
        raise SettingsError(name, raw, f"a number >= {minimum:g}")
    return value


def _whole(environ: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isdecimal() and int(raw) >= minimum):
        raise SettingsError(name, raw, f"a whole number >= {minimum}")
    return int(raw)


def _volume(environ: Mapping[str, str]) -> Path:
    raw = environ.get(VOLUME, "").strip()
    volume = Path(raw or DEFAULT_VOLUME)
    # An absent mount point means no volume (the cache goes to local disk); anything else
    # that is not a directory is a mistake that would send a full install to the wrong place.
    if volume.exists() and not volume.is_dir():
        raise SettingsError(
            VOLUME, raw or DEFAULT_VOLUME, "the network volume's mount point, a directory"
        )
    return volume


def _url(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, "").strip() or default
    if not value.startswith(("https://", "http://", "file://")):
        raise SettingsError(name, value, "an https://, http:// or file:// URL")
    return value.rstrip("/")


def _gpu(environ: Mapping[str, str]) -> str:
    value = environ.get(GPU, "").strip() or "auto"
    if value.lower() in ("auto", "none"):
        return value.lower()
    # A spec plans for a GPU that is not here (a baked image built on a CPU machine).
    from .gpu import parse_gpu_spec

    parse_gpu_spec(value, variable=GPU)
    return value


def _cache_root(environ: Mapping[str, str], volume: Path) -> Path:
    explicit = environ.get(CACHE, "").strip()
    if explicit:
        return Path(explicit)
    if volume.is_dir():
        return volume / ".runpod-slim"
    return _user_cache(environ) / "runpod-slim"


def _local_root(environ: Mapping[str, str]) -> Path:
    explicit = environ.get(LOCAL_DIR, "").strip()
    if explicit:
        return Path(explicit)
    return _user_cache(environ) / "runpod-slim-local"


def _user_cache(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_CACHE_HOME", "").strip()
    return Path(xdg) if xdg else Path(environ.get("HOME") or os.path.expanduser("~")) / ".cache"


def _custom(environ: Mapping[str, str]) -> CustomHandler:
    target = environ.get(CUSTOM_HANDLER, "").strip()
    module, _, function = target.partition(":")
    if not (
        module and function and module.replace(".", "_").isidentifier() and function.isidentifier()
    ):
        raise SettingsError(
            CUSTOM_HANDLER,
            target,
            "HANDLER_TYPE=custom needs module:function, such as "
            "my_worker:handler (the function you passed to runpod.serverless.start)",
        )
    directory = Path(environ.get(CUSTOM_DIR, "").strip() or ".").resolve()
    requirements = environ.get(CUSTOM_REQUIREMENTS, "").strip()
    return CustomHandler(
        target=target,
        directory=directory,
        requirements=Path(requirements) if requirements else directory / "requirements.txt",
        gpu_stack=_flag(environ, CUSTOM_GPU_STACK),
        stack_pins=choice_setting(environ, CUSTOM_STACK_PINS, "stack", STACK_PIN_POLICIES),
    )


def _ca_bundle(environ: Mapping[str, str]) -> str | None:
    # The names Python's ssl, requests and curl users already set for a corporate CA.
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT"):
        value = environ.get(name, "").strip()
        if value:
            return value
    return None
