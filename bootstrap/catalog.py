"""What this build offers, declared once: its handlers, the envs they run in, the torch builds.

Everything else reads this module: the settings' HANDLER_TYPE choices, the planner and the
profiles, the handler registry (handlers/__init__.py), scripts/lock-deps.sh (through
`python3 -m bootstrap catalog`), the build script and the tests of the locks and the Hub file.
Adding a handler is a package under handlers/, one `Handler` entry here and one requirements
file in bootstrap/requirements/. Standard library only, and nothing is read at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TORCH_VERSION = "2.7.0"  # every torch== pin in requirements/*.in says this (tests/unit)
DEFAULT_TORCH_INDEX_URL = "https://download.pytorch.org/whl"
REQUIREMENTS_DIR = Path(__file__).resolve().parent / "requirements"
CUSTOM = "custom"  # HANDLER_TYPE=custom: a user's own function, from its own requirements
NO_TORCH = "none"  # the variant of an env without PyTorch and without CUDA wheels


@dataclass(frozen=True)
class TorchBuild:
    """One build of torch: where it comes from, which drivers and GPUs it runs on."""

    variant: str
    # True: from PyTorch's own index (<torch index>/<variant>); False: the package index.
    torch_index: bool
    min_driver: str | None  # the oldest NVIDIA driver it runs on; None: no CUDA
    # Compute capabilities it has kernels for: (oldest, newest major); None: no CUDA.
    kernels: tuple[tuple[int, int], int] | None
    torch_version: str = TORCH_VERSION

    def index_url(self, base: str) -> str | None:
        """The index this build comes from, below `base` (PyTorch's), or None: the default."""
        return f"{base.rstrip('/')}/{self.variant}" if self.torch_index else None


# cu126 relies on CUDA's minor-version compatibility (any 12.x driver; torch ships compiled
# kernels, no PTX JIT is needed); cu128 exists for Blackwell, whose GPUs need the 12.8 driver
# anyway. The first build is the default, and the one whose locks are hashed from the index.
TORCH_BUILDS: dict[str, TorchBuild] = {
    "cu126": TorchBuild("cu126", torch_index=False, min_driver="525.60.13", kernels=((5, 0), 9)),
    "cu128": TorchBuild("cu128", torch_index=True, min_driver="570.26", kernels=((7, 5), 12)),
    "cpu": TorchBuild("cpu", torch_index=True, min_driver=None, kernels=None),
}
DEFAULT_TORCH_BUILD = "cu126"


@dataclass(frozen=True)
class Env:
    """One lockable env: a requirements file, locked per variant and Python by lock-deps.sh."""

    name: str  # the lock files' and env keys' prefix
    torch: bool  # needs the PyTorch stack, so the GPU decides the variant
    flash_attn: bool  # benefits from Flash Attention where the GPU supports it
    imports: tuple[str, ...]  # top-level modules the smoke test imports
    requirements: Path | None = None  # default: REQUIREMENTS_DIR/<name>.in

    @property
    def requirements_file(self) -> Path:
        return self.requirements or REQUIREMENTS_DIR / f"{self.name}.in"

    @property
    def variants(self) -> tuple[str, ...]:
        """The variants it is locked for: every torch build, or none."""
        return tuple(TORCH_BUILDS) if self.torch else (NO_TORCH,)


@dataclass(frozen=True)
class EnvChoice:
    """A handler whose env depends on one of its own settings (tts: the engine)."""

    variable: str
    default: str
    envs: Mapping[str, str]  # the setting's value -> the env's name


@dataclass(frozen=True)
class Handler:
    """One handler of this build: where its class is, its env, its own settings."""

    name: str  # HANDLER_TYPE's value
    entry_point: str  # "module:Class", imported only when chosen
    env: str | EnvChoice  # the env's name, or the setting that picks it
    settings_module: str | None = None  # "handlers.<name>.settings": load(environ) -> Settings

    @property
    def envs(self) -> tuple[str, ...]:
        """Every env this handler may run in."""
        if isinstance(self.env, str):
            return (self.env,)
        return tuple(dict.fromkeys(self.env.envs.values()))


TTS_ENGINE = "RUNPOD_SLIM_TTS_ENGINE"

ENVS: dict[str, Env] = {
    "audio": Env(
        "audio",
        torch=True,
        flash_attn=True,
        imports=("torch", "torchaudio", "ctranslate2", "faster_whisper", "whisperx", "runpod"),
    ),
    "tts": Env(
        "tts",
        torch=True,
        flash_attn=True,
        imports=("torch", "torchaudio", "onnxruntime", "piper_onnx", "soundfile", "runpod"),
    ),
    # Piper runs on onnxruntime: no torch, so no CUDA wheels and a small, quick install.
    "tts-piper": Env(
        "tts-piper",
        torch=False,
        flash_attn=False,
        imports=("onnxruntime", "piper_onnx", "soundfile", "runpod"),
    ),
    "video": Env(
        "video", torch=False, flash_attn=False, imports=("av", "imageio_ffmpeg", "runpod")
    ),
    "storage": Env("storage", torch=False, flash_attn=False, imports=("boto3", "runpod")),
    # The GPU stack HANDLER_TYPE=custom adds with RUNPOD_SLIM_CUSTOM_GPU_STACK=1; no runpod.
    "stack": Env("stack", torch=True, flash_attn=False, imports=("torch", "torchaudio")),
}

HANDLERS: dict[str, Handler] = {
    "audio": Handler("audio", "handlers.audio:AudioHandler", "audio", "handlers.audio.settings"),
    "tts": Handler(
        "tts",
        "handlers.tts:TTSHandler",
        EnvChoice(TTS_ENGINE, "piper", {"piper": "tts-piper", "kokoro": "tts", "qwen": "tts"}),
        "handlers.tts.settings",
    ),
    "video": Handler("video", "handlers.video:VideoHandler", "video", "handlers.video.settings"),
    "storage": Handler(
        "storage", "handlers.storage:StorageHandler", "storage", "handlers.storage.settings"
    ),
}
DEFAULT_HANDLER = "storage"


@dataclass(frozen=True)
class LockSet:
    """The lock files one env needs: one per variant and Python."""

    env: str
    variant: str
    requirements: Path


def handler_types() -> tuple[str, ...]:
    """Every value HANDLER_TYPE accepts, in the catalog's order."""
    return (*HANDLERS, CUSTOM)


def env_of(handler: str, environ: Mapping[str, str]) -> str | None:
    """The env `handler` runs in with this environment, or None for an unknown choice."""
    choice = HANDLERS[handler].env
    if isinstance(choice, str):
        return choice
    value = environ.get(choice.variable, "").strip().lower() or choice.default
    return choice.envs.get(value)


def lock_sets() -> tuple[LockSet, ...]:
    """Every (env, variant) that must have locks, for lock-deps.sh and the lock tests."""
    return tuple(
        LockSet(env.name, variant, env.requirements_file)
        for env in ENVS.values()
        for variant in env.variants
    )


def lock_file_name(env: str, variant: str, python: str) -> str:
    """`<env>-<variant>-cp<XY>.txt`: one lock's file name."""
    return f"{env}-{variant}-cp{python.replace('.', '')}.txt"


def missing_locks(locks_dir: Path, pythons: tuple[str, ...] = ("3.10", "3.11")) -> list[str]:
    """The lock files the catalog demands that `locks_dir` lacks (empty: all there)."""
    names = [
        lock_file_name(lock_set.env, lock_set.variant, python)
        for lock_set in lock_sets()
        for python in pythons
    ]
    return [name for name in names if not (locks_dir / name).is_file()]


def unknown_envs() -> list[str]:
    """Env names that handlers point to but ENVS does not declare (a catalog mistake)."""
    return sorted({e for h in HANDLERS.values() for e in h.envs if e not in ENVS})


def to_json() -> dict[str, object]:
    """The catalog as plain data (`python3 -m bootstrap catalog --json`)."""
    return {
        "torch_version": TORCH_VERSION,
        "torch_builds": {
            v: {
                "torch_index": b.torch_index,
                "min_driver": b.min_driver,
                "kernels": None if b.kernels is None else [list(b.kernels[0]), b.kernels[1]],
                "torch_version": b.torch_version,
            }
            for v, b in TORCH_BUILDS.items()
        },
        "envs": {
            e.name: {
                "torch": e.torch,
                "flash_attn": e.flash_attn,
                "imports": list(e.imports),
                "requirements": str(e.requirements_file),
                "variants": list(e.variants),
            }
            for e in ENVS.values()
        },
        "handlers": {
            h.name: {
                "entry_point": h.entry_point,
                "envs": list(h.envs),
                "env_setting": None if isinstance(h.env, str) else h.env.variable,
                "settings_module": h.settings_module,
            }
            for h in HANDLERS.values()
        },
    }
