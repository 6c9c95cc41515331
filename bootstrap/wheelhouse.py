"""The image's wheelhouse: the pinned wheels a start needs before it can reach an index.

    python3 -m bootstrap.wheelhouse DIR    fetch them into DIR (an image build's step)

On a GPU host every start loads pynvml to learn the GPU (bootstrap/nvml.py), and a start that
must install unpacks uv (bootstrap/installer.py). Both come from the wheelhouse first, so an
image built with them starts with no network. The pins are those two modules' own (one owner);
each file is checked against its sha256 here, and again where a start uses it.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import BootstrapError
from .fetch import download, index_file_url
from .settings import Settings, load_settings


@dataclass(frozen=True)
class PinnedWheel:
    """One wheel of the wheelhouse: its project on the index, its file name and sha256."""

    project: str
    filename: str
    sha256: str


def pinned_wheels(machine: str | None = None) -> tuple[PinnedWheel, ...]:
    """What the wheelhouse holds for `machine` (this one's architecture by default)."""
    from .installer import UV_WHEELS
    from .nvml import NVML_SHA256, NVML_WHEEL

    arch = machine or platform.machine()
    if arch not in UV_WHEELS:
        raise BootstrapError(
            f"no pinned uv wheel for {arch}: the wheelhouse is for x86_64, aarch64"
        )
    uv_file, uv_sha256 = UV_WHEELS[arch]
    return (
        PinnedWheel("nvidia-ml-py", NVML_WHEEL, NVML_SHA256),
        PinnedWheel("uv", uv_file, uv_sha256),
    )


def fill(
    settings: Settings,
    into: Path,
    *,
    log: Callable[[str], None],
    machine: str | None = None,
) -> list[Path]:
    """Fetch every pinned wheel into `into` from the settings' index, each hash-checked."""
    fetched = []
    for wheel in pinned_wheels(machine):
        url = index_file_url(
            settings.index_url, wheel.project, wheel.filename, ca_bundle=settings.ca_bundle
        )
        path = download(
            url,
            into / wheel.filename,
            wheel.sha256,
            ca_bundle=settings.ca_bundle,
            retries=settings.retries,
            log=log,
        )
        log(f"wheelhouse: {path} ({path.stat().st_size // 1024} KiB, sha256 {wheel.sha256[:12]})")
        fetched.append(path)
    return fetched


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python3 -m bootstrap.wheelhouse DIR", file=sys.stderr)
        return 2
    try:
        settings = load_settings(os.environ if environ is None else environ)
        fill(settings, Path(args[0]), log=lambda line: print(line, file=sys.stderr))
    except BootstrapError as exc:
        print(f"runpod-slim: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
