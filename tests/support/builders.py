"""Builders of real artifacts for tests: lock files, wheels."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from bootstrap.catalog import lock_file_name
from bootstrap.lockheader import LockHeader


def write_lock(
    locks_dir: Path,
    handler: str,
    variant: str,
    python: str,
    body: str,
    *,
    hashed: bool = True,
    index: str | None = None,
) -> Path:
    """A lock file in the generated format (bootstrap/lockheader.py's header), with `body` as
    its requirement lines."""
    header = LockHeader(handler, variant, python, "x86_64-manylinux_2_28", hashed, index)
    path = locks_dir / lock_file_name(handler, variant, python)
    path.write_text(header.render() + body)
    return path


def build_wheel(directory: Path, filename: str, files: dict[str, str]) -> Path:
    """A real, installable wheel named `filename` holding `files` (path -> text)."""
    name, version = filename.split("-")[:2]
    dist_info = f"{name}-{version}.dist-info"
    contents = dict(files)
    contents[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n"
    )
    contents[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: runpod-slim-tests\nRoot-Is-Purelib: false\n"
        f"Tag: {'-'.join(filename[:-4].split('-')[2:])}\n"
    )
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / filename
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel
