"""Helpers for scripts/lock-deps.sh: write lock files with the header the bootstrap reads.

Standard library and the bootstrap's own bootstrap/lockheader.py (the one definition of the
header, which the bootstrap reads with the same module). Subcommands:

``finish``
    Wrap uv's ``pip compile`` output in the lock header, after checking it: every requirement
    pinned with ``==``, a ``--hash=sha256:`` for each one in a hashed lock, no index options,
    and no torch or ``nvidia-*`` package in a ``none`` lock.
``derive``
    Make the unhashed lock for a build that lives on PyTorch's own index (cu128, cpu) from the
    hashed cu126 lock: the same pins minus torch, torchaudio, torchvision, triton and every
    ``nvidia-*`` package, without hashes, plus ``torch==``, ``torchaudio==`` and (where the
    base pins it) ``torchvision==`` (resolved with their dependencies from that index at
    install time).
``probe``
    Exit 0 if a URL answers (any HTTP status below 400) within a timeout, else 1.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bootstrap/
from bootstrap.lockheader import LockHeader

PLATFORM_DEFAULT = "x86_64-manylinux_2_28"
TORCH_PACKAGES = frozenset({"torch", "torchaudio", "torchvision", "triton"})
# The packages built for one torch build, pinned by version in a derived lock (the rest of the
# torch stack, triton and the nvidia-* wheels, follows from torch on PyTorch's index).
TORCH_BUILDS = ("torch", "torchaudio", "torchvision")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


class LockError(Exception):
    """The compiled requirements are not fit to be a lock file."""


@dataclass(frozen=True)
class Requirement:
    """One requirement of a compiled lock: its lines (continuations included) and its pin."""

    name: str
    version: str
    lines: tuple[str, ...]

    @property
    def hashes(self) -> list[str]:
        """The sha256 hashes given for this requirement."""
        return [h for line in self.lines for h in re.findall(r"--hash=sha256:([0-9a-f]{64})", line)]


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_torch_stack(name: str) -> bool:
    """True for the packages that come from PyTorch's index: torch, torchaudio, torchvision,
    triton, nvidia-*."""
    name = normalize(name)
    return name in TORCH_PACKAGES or name.startswith("nvidia-")


def parse_requirements(text: str) -> list[Requirement]:
    """Split uv's compiled output into requirements; refuse anything that is not a plain pin."""
    requirements: list[Requirement] = []
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace():
            if not current:
                raise LockError(f"continuation line with no requirement: {stripped!r}")
            current.append(line)
            continue
        if stripped.startswith("-"):
            raise LockError(f"option line in compiled output (not allowed in a lock): {stripped!r}")
        if current:
            requirements.append(_requirement(current))
        current = [line]
    if current:
        requirements.append(_requirement(current))
    return requirements


def _requirement(lines: list[str]) -> Requirement:
    match = _PIN.match(lines[0])
    if not match:
        raise LockError(f"requirement not pinned with ==: {lines[0]!r}")
    return Requirement(normalize(match[1]), match[2], tuple(lines))


def header(
    *, handler: str, variant: str, python: str, platform: str, hashed: bool, index: str | None
) -> str:
    """The lock header's text, as bootstrap/lockheader.py defines it."""
    return LockHeader(handler, variant, python, platform, hashed, index).render()


def check(requirements: Sequence[Requirement], *, variant: str, hashed: bool) -> None:
    """Refuse a lock that breaks the rules the bootstrap relies on."""
    if not requirements:
        raise LockError("no requirements in the compiled output")
    for req in requirements:
        if hashed and not req.hashes:
            raise LockError(f"{req.name}=={req.version} has no --hash=sha256: in a hashed lock")
        if variant == "none" and is_torch_stack(req.name):
            raise LockError(f"{req.name} must not be in a 'none' lock (no torch, no CUDA wheels)")


def cmd_finish(args: argparse.Namespace) -> int:
    """Write header + uv's output to args.out, after checking it."""
    body = Path(args.body).read_text()
    hashed = args.hashed == "true"
    requirements = parse_requirements(body)
    check(requirements, variant=args.variant, hashed=hashed)
    text = header(
        handler=args.handler,
        variant=args.variant,
        python=args.python,
        platform=args.platform,
        hashed=hashed,
        index=args.index,
    )
    lines = [line for req in requirements for line in req.lines]
    _write(Path(args.out), text + "\n".join(lines) + "\n")
    return 0


def derive_unhashed(base_text: str, builds: dict[str, str]) -> list[str]:
    """Requirement lines of the unhashed lock made from a hashed cu126 lock's text: its pins
    outside the torch stack, plus `builds` (torch, torchaudio, torchvision -> version)."""
    pins = {
        req.name: req.version
        for req in parse_requirements(base_text)
        if not is_torch_stack(req.name)
    }
    pins.update(builds)
    return [f"{name}=={pins[name]}" for name in sorted(pins)]


def cmd_derive(args: argparse.Namespace) -> int:
    """Write the unhashed lock for args.variant from the hashed lock args.base."""
    base_text = Path(args.base).read_text()
    versions = {req.name: req.version for req in parse_requirements(base_text)}
    missing = [name for name in ("torch", "torchaudio") if name not in versions]
    if missing:
        raise LockError(f"{args.base} pins no {', '.join(missing)}: nothing to derive from")
    builds = {name: versions[name] for name in TORCH_BUILDS if name in versions}
    lines = derive_unhashed(base_text, builds)
    text = header(
        handler=args.handler,
        variant=args.variant,
        python=args.python,
        platform=args.platform,
        hashed=False,
        index=args.index,
    )
    _write(Path(args.out), text + "\n".join(lines) + "\n")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """0 if args.url answers below HTTP 400 within args.timeout seconds, else 1."""
    request = urllib.request.Request(args.url, method="GET", headers={"User-Agent": "lock-deps"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status = int(response.status)
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"probe: {args.url}: {error}", file=sys.stderr)
        return 1
    return 0 if status < 400 else 1


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lock_deps.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def lock_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--handler", required=True)
        p.add_argument("--variant", required=True)
        p.add_argument("--python", required=True, help="e.g. 3.11")
        p.add_argument("--platform", default=PLATFORM_DEFAULT)
        p.add_argument("--out", required=True, help="lock file to write")

    finish = sub.add_parser("finish", help="header + checked uv output -> lock file")
    lock_args(finish)
    finish.add_argument("--hashed", choices=("true", "false"), required=True)
    finish.add_argument("--index", default=None, help="index torch comes from, if not the default")
    finish.add_argument("--body", required=True, help="uv pip compile output")
    finish.set_defaults(func=cmd_finish)

    derive = sub.add_parser("derive", help="unhashed torch-index lock from the cu126 lock")
    lock_args(derive)
    derive.add_argument("--index", required=True, help="the PyTorch index for this variant")
    derive.add_argument("--base", required=True, help="the hashed cu126 lock, same Python")
    derive.set_defaults(func=cmd_derive)

    probe = sub.add_parser("probe", help="does this URL answer?")
    probe.add_argument("url")
    probe.add_argument("--timeout", type=float, default=10.0)
    probe.set_defaults(func=cmd_probe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; LockError becomes a one-line message and exit status 1."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (LockError, OSError) as error:
        print(f"lock_deps: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
