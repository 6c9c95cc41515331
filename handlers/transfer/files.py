"""Writing a job's files: atomically (never half-written), hashed as the bytes arrive."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .. import volume
from ..errors import JobError
from .locations import Target

CHUNK = 1 << 20  # bytes per read and write of a streamed copy


@contextlib.contextmanager
def atomic_write(dest: Target) -> Iterator[IO[bytes]]:
    """Write to a temporary name beside dest, then rename: never a half-written file.

    On the volume, handlers.volume does it without following links (see there); the job's own
    directory is private to the job, so a plain path is enough.
    """
    if isinstance(dest, volume.VolumePath):
        with volume.atomic_writer(dest) as out:
            yield out
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.part")
    try:
        with tmp.open("w+b") as out:  # readable too: HashingWriter reads parts back
            yield out
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def copy_file(source: Path, dest: Target) -> None:
    """Copy into place atomically (the volume is shared: readers never see a partial file)."""
    with source.open("rb") as src, atomic_write(dest) as out:
        shutil.copyfileobj(src, out, CHUNK)


class HashingWriter:
    """A file for downloads that hashes the bytes, in order, as they are written.

    s3transfer writes the parts of a parallel download at their offsets (seek, then write),
    often but not always in order. Bytes that extend the hashed prefix are hashed at once;
    a part that arrives early is read back from the page cache when the gap before it fills.
    So the hash costs no second pass over the file, and the download stays parallel.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha256 = hashlib.sha256()
        self.hashed = 0  # bytes [0, hashed) are in the digest
        self.early: dict[int, int] = {}  # offset -> length of parts written past a gap
        self.position = 0

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.position = self.out.seek(offset, whence)
        return self.position

    def tell(self) -> int:
        return self.position

    def write(self, data: bytes) -> int:
        start = self.position
        written = self.out.write(data)
        self.position += written
        if start == self.hashed:
            self.sha256.update(data)
            self.hashed += written
            self._catch_up()
        elif start > self.hashed:
            self.early[start] = written
        return written

    def _catch_up(self) -> None:
        if self.hashed not in self.early:
            return
        self.out.flush()
        while self.hashed in self.early:
            length = self.early.pop(self.hashed)
            self.sha256.update(os.pread(self.out.fileno(), length, self.hashed))
            self.hashed += length

    def hexdigest(self) -> str:
        if self.early:
            raise JobError("the download left a gap in the file; it was not completed")
        return self.sha256.hexdigest()
