"""A custom handler's requirements file: read, checked against the GPU stack, made a Lock.

A fully hashed file is installed as it is (hashes required, no resolution). Plain requirements
are resolved once at install: runpod is added when missing and, with the GPU stack
(RUNPOD_SLIM_CUSTOM_GPU_STACK=1), the stack's own pins from `locks/stack-<variant>-cp3X.txt`
(torch, torchaudio, torchvision, triton and the CUDA wheels, with their hashes where the lock
has them). A requirement on a stack package that the stack's version satisfies is replaced by
the stack's pin; one that it does not satisfy is refused here, before anything is downloaded,
unless RUNPOD_SLIM_CUSTOM_STACK_PINS=user, which installs the user's pins and leaves the stack
out. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import PlanError
from .profiles import LOCKS_DIR, Lock, UserRequirements, read_lock
from .settings import CUSTOM_GPU_STACK, CUSTOM_REQUIREMENTS, CUSTOM_STACK_PINS

RUNPOD_PIN = "runpod==1.12.0"
STACK_LOCK = "stack"  # locks/stack-<variant>-cp3X.txt, from requirements/stack.in
# The stack's packages that are built for one torch build; the rest follows from torch.
STACK_BUILDS = ("torch", "torchaudio", "torchvision")
_STACK_NAMES = frozenset({*STACK_BUILDS, "triton", "flash-attn"})

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
_CLAUSE = re.compile(r"^(===|==|!=|~=|>=|<=|>|<)\s*(\S+)$")
_VERSION = re.compile(
    r"^v?(\d+(?:\.\d+)*)(?:[-_.]?(a|b|rc|alpha|beta|c|pre|preview)[-_.]?(\d*))?"
    r"(?:[-_.]?(?:post|rev|r)[-_.]?(\d*))?(?:[-_.]?dev[-_.]?(\d*))?$"
)
_PRE = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}


@dataclass(frozen=True)
class Requirement:
    """One requirement of the user's file: its physical lines, and what they ask for."""

    name: str  # PEP 503 normalised
    specifier: str  # "==2.6.0", ">=2,<3", or "" (any version)
    url: str | None  # `name @ url`
    lines: tuple[str, ...]

    def describe(self) -> str:
        """How the requirement reads in a message: `torch==2.6.0`, `torch @ <url>`."""
        return f"{self.name} @ {self.url}" if self.url else f"{self.name}{self.specifier}"


@dataclass(frozen=True)
class Conflict:
    """A user's requirement on a stack package that the stack's pin does not satisfy."""

    user: Requirement
    stack_version: str


def is_stack_package(name: str) -> bool:
    """torch, torchaudio, torchvision, triton, flash-attn or an nvidia-*-cu12 CUDA wheel."""
    name = normalize(name)
    return name in _STACK_NAMES or (name.startswith("nvidia-") and name.endswith("-cu12"))


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def custom_lock(
    path: Path,
    *,
    variant: str,
    python: str,
    gpu_stack: bool,
    stack_pins: str = "stack",
    flash_attn_version: str | None = None,
    locks_dir: Path = LOCKS_DIR,
) -> Lock:
    """The user's requirements file as a Lock, or a PlanError saying what to change."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlanError(
            f"HANDLER_TYPE=custom: cannot read the requirements file {path} ({exc.strerror}); "
            f"put requirements.txt beside your module or set {CUSTOM_REQUIREMENTS}"
        ) from None
    entries = parse(text)
    requirements = [entry for entry in entries if isinstance(entry, Requirement)]
    names = {req.name for req in requirements}
    hashed = _is_hashed(text)
    if hashed and "runpod" not in names:
        raise PlanError(
            f"{path} is a hashed lock without runpod: hashed locks are installed as "
            f"they are, so they must include runpod and its dependencies"
        )
    stack: dict[str, Requirement] = {}
    if gpu_stack:
        stack = stack_requirements(variant, python, locks_dir)
    stack_versions = {name: _version_of(req) for name, req in stack.items()}
    if gpu_stack and flash_attn_version:
        stack_versions["flash-attn"] = flash_attn_version
    conflicts = find_conflicts(requirements, stack_versions)
    if conflicts and stack_pins != "user":
        raise PlanError(conflict_message(path, conflicts, variant))
    if conflicts:
        mode = "theirs"
    elif gpu_stack and not hashed:
        mode = "added"
    else:
        mode = "none"
    lines: list[str] = []
    for entry in entries:
        if mode == "added" and isinstance(entry, Requirement) and is_stack_package(entry.name):
            continue  # the stack's pin (which satisfies it) is added below
        lines += entry.lines if isinstance(entry, Requirement) else [entry]
    if not hashed and "runpod" not in names:
        lines.append(RUNPOD_PIN)
    if mode == "added":
        lines += [line for req in stack.values() for line in req.lines]
    full = "\n".join(lines).rstrip("\n") + "\n"
    return Lock(
        path=path,
        handler="custom",
        variant=variant,
        python=python,
        platform="any",
        hashed=hashed,
        index=None,  # RUNPOD_SLIM_TORCH_INDEX_URL decides where cu128 and cpu builds come from
        text=full,
        sha256=hashlib.sha256(full.encode()).hexdigest(),
        user=UserRequirements(
            # Where the stack replaced them, the stack's own smoke imports cover them.
            distributions=tuple(
                dict.fromkeys(
                    req.name
                    for req in requirements
                    if not (mode == "added" and is_stack_package(req.name))
                )
            ),
            stack=mode,
            own_stack_pins=tuple(conflict.user.describe() for conflict in conflicts),
        ),
    )


def stack_requirements(
    variant: str, python: str, locks_dir: Path = LOCKS_DIR
) -> dict[str, Requirement]:
    """The stack lock's pins of stack packages (name -> requirement, hash lines included)."""
    lock = read_lock(STACK_LOCK, variant, python, locks_dir)
    return {
        req.name: req
        for req in parse(lock.text)
        if isinstance(req, Requirement) and is_stack_package(req.name)
    }


def find_conflicts(
    requirements: list[Requirement], stack_versions: dict[str, str]
) -> list[Conflict]:
    """The requirements on stack packages that the stack's versions do not satisfy."""
    conflicts = []
    for req in requirements:
        version = stack_versions.get(req.name)
        if version is None:
            continue
        if req.url is not None or satisfies(version, req.specifier) is False:
            conflicts.append(Conflict(req, version))
    return conflicts


def conflict_message(path: Path, conflicts: list[Conflict], variant: str) -> str:
    """One sentence: both pins, and the two ways out."""
    theirs = _words([c.user.describe() for c in conflicts])
    ours = _words([f"{c.user.name}=={c.stack_version}" for c in conflicts])
    return (
        f"{path} pins {theirs}, but {CUSTOM_GPU_STACK}=1 installs {ours} (the {variant} "
        f"build of the GPU stack); nothing was downloaded. Remove those pins or change them "
        f"to the stack's versions, or set {CUSTOM_STACK_PINS}=user to install your pins "
        f"instead of the stack's (the stack's torch, torchaudio, torchvision, CUDA wheels and "
        f"flash-attn are then left out)"
    )


def _words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def parse(text: str) -> list[Requirement | str]:
    """The file's logical entries in order: a Requirement, or a line kept as it is (a
    comment, a blank, an option, a requirement without a name)."""
    entries: list[Requirement | str] = []
    physical = text.splitlines()
    index = 0
    while index < len(physical):
        group = [physical[index]]
        while group[-1].rstrip().endswith("\\") and index + 1 < len(physical):
            index += 1
            group.append(physical[index])
        index += 1
        joined = " ".join(line.rstrip().rstrip("\\") for line in group)
        req = _requirement(joined, tuple(group))
        entries += [req] if req else group
    return entries


def _requirement(joined: str, lines: tuple[str, ...]) -> Requirement | None:
    content = re.split(r"(?:^|\s)#", joined, maxsplit=1)[0].strip()
    content = re.sub(r"\s--hash[=\s]\S+", "", " " + content).strip()
    match = _NAME.match(content)
    if not content or content.startswith("-") or not match:
        return None
    rest = match[3].split(";", 1)[0].strip()
    if rest.startswith("@"):
        return Requirement(normalize(match[1]), "", rest[1:].strip(), lines)
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1]
    if rest and rest[0] not in "=!~<>":
        return None  # a path or URL that happens to start like a name
    return Requirement(normalize(match[1]), re.sub(r"\s+", "", rest), None, lines)


def _is_hashed(text: str) -> bool:
    # Hashed: every line is a requirement continued by `\`, or carries a --hash.
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    return bool(lines) and all("--hash=" in line or line.rstrip().endswith("\\") for line in lines)


def _version_of(req: Requirement) -> str:
    return req.specifier[2:] if req.specifier.startswith("==") else req.specifier


# ------------------------------------------------------------------ versions (a PEP 440 subset)


def satisfies(version: str, specifier: str) -> bool | None:
    """Whether `version` meets every clause of `specifier` ("" meets anything); None when a
    clause or the version is beyond this small PEP 440 subset (the resolver then decides)."""
    if not specifier:
        return True
    results = [_meets(version, clause.strip()) for clause in specifier.split(",")]
    if False in results:
        return False
    return None if None in results else True


def _meets(version: str, clause: str) -> bool | None:
    match = _CLAUSE.match(clause)
    if not match:
        return None
    op, wanted = match[1], match[2]
    if op == "===":
        return version == wanted
    candidate = _key(version)
    if wanted.endswith(".*") and op in ("==", "!="):
        prefix = _release(wanted[:-2])
        if candidate is None or prefix is None:
            return None
        release = candidate[0] + (0,) * len(prefix)
        same = release[: len(prefix)] == prefix
        return same if op == "==" else not same
    # A local label (2.7.0+cu128) names a build of the same release; the variant decides it.
    bound = _key(wanted.split("+", 1)[0])
    if candidate is None or bound is None:
        return None
    if op == "~=":
        prefix = _release(wanted.split("+", 1)[0])
        if prefix is None or len(prefix) < 2:
            return None
        release = candidate[0] + (0,) * len(prefix)
        return candidate >= bound and release[: len(prefix) - 1] == prefix[:-1]
    return {
        "==": candidate == bound,
        "!=": candidate != bound,
        ">=": candidate >= bound,
        "<=": candidate <= bound,
        ">": candidate > bound,
        "<": candidate < bound,
    }[op]


def _release(text: str) -> tuple[int, ...] | None:
    if not re.fullmatch(r"\d+(\.\d+)*", text):
        return None
    return tuple(int(part) for part in text.split("."))


def _key(version: str) -> tuple[tuple[int, ...], tuple[int, int], int, float] | None:
    match = _VERSION.match(version.split("+", 1)[0].strip().lower())
    if not match:
        return None
    release = tuple(int(part) for part in match[1].split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    post = int(match[4] or 0) if match[4] is not None else -1
    dev = float(match[5] or 0) if match[5] is not None else float("inf")
    if match[2]:
        pre = (_PRE[match[2]], int(match[3] or 0))
    elif match[5] is not None and post < 0:
        pre = (-1, 0)  # 1.0.dev0 sorts before 1.0a0
    else:
        pre = (3, 0)
    return release, pre, post, dev
