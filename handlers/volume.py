"""`volume://` paths: what a job may reach on the network volume, and nothing else.

A job names files on the volume as `volume://relative/path`. This module is the only place
that turns such a name into something opened, listed, written or deleted, under three rules:

- the path is relative, has no `..`, no NUL, valid UTF-8, components of at most 255 bytes;
- the worker's own directories on the volume (the env cache, `Settings.cache_root`, and the
  default `<volume>/.runpod-slim` that other workers sharing the volume use) are out of reach,
  whatever the spelling: by name (case-folded, so a case-insensitive filesystem cannot be used
  to alias them) and by identity (device and inode of every directory walked, so a bind mount
  or a renamed parent cannot either);
- symbolic links on the volume are never followed by a job action. A link is listed as a link
  (size and time of the link itself), and a path through one is refused.

How, and why this way: every path is walked one component at a time from a descriptor of the
volume's root, each directory opened with O_NOFOLLOW | O_DIRECTORY relative to its parent
(an openat-style walk). A link anywhere in the path fails the open itself, so there is no
window between checking and opening in which a link could be swapped in. Writes, deletes and
listings then act through the parent's descriptor (renameat, unlinkat, scandir on the fd).
Files that other code must open by name (ffmpeg, PyAV, boto3's upload) get the checked
lexical path after the walk: jobs cannot create links (no action makes one), so the only party
that could swap a link in between the walk and that open is someone with direct access to the
volume, who can already write the cache. Writes never go through a hard link either: a result
is written to a new temporary file in the destination's own directory and renamed over the
name, so an existing hard-linked inode is replaced, never written into.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from .config import HandlerConfig
from .errors import JobError

DEFAULT_CACHE_NAME = ".runpod-slim"  # bootstrap.settings' default cache root on the volume
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class VolumePath:
    """A checked `volume://` name: the volume's root and the path's components under it."""

    url: str
    field: str
    root: Path
    parts: tuple[str, ...]
    protected: tuple[tuple[str, ...], ...]  # case-folded components of the worker's dirs
    protected_ids: frozenset[tuple[int, int]]  # (st_dev, st_ino) of the worker's dirs

    @property
    def path(self) -> Path:
        """The lexical path on this machine (no link in it: checked by the walk)."""
        return self.root.joinpath(*self.parts)

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    def refuse(self, why: str) -> JobError:
        return JobError(f"{self.field}={shorten(self.url)} {why}")


def shorten(value: str, limit: int = 100) -> str:
    """repr() of a value cut to `limit` characters, safe to put in one line of an error."""
    text = value if len(value) <= limit else value[: limit - 3] + "..."
    return ascii(text) if not text.isprintable() else repr(text)


def parse(url: str, field: str, config: HandlerConfig) -> VolumePath:
    """Check a `volume://` name lexically and against the worker's own directories."""
    if not url.startswith("volume://"):
        raise JobError(f"{field}={shorten(url)} is not a volume:// location; write volume://path")
    relative = url[len("volume://") :]
    example = "(such as volume://inputs/clip.mp4)"
    if "\x00" in relative:
        raise JobError(f"{field}={shorten(url)} contains a NUL character; name a file {example}")
    try:
        encoded = relative.encode("utf-8")
    except UnicodeEncodeError:
        raise JobError(
            f"{field}={shorten(url)} is not valid UTF-8 text; name a file {example}"
        ) from None
    if len(encoded) > MAX_PATH_BYTES:
        raise JobError(f"{field}={shorten(url)} is over {MAX_PATH_BYTES} bytes long; the limit")
    parts = PurePosixPath(relative).parts
    if relative.startswith("/") or ".." in parts:
        raise JobError(
            f"{field}={shorten(url)} must be a relative path under the volume, without '..' "
            f"{example}"
        )
    for part in parts:
        if len(part.encode()) > MAX_NAME_BYTES:
            raise JobError(
                f"{field}={shorten(url)} has a name over {MAX_NAME_BYTES} bytes, the limit of "
                f"one file or folder name"
            )
    if not config.volume.is_dir():
        raise JobError(f"{field}={shorten(url)}: no network volume is attached at {config.volume}")
    root = Path(os.path.realpath(config.volume))
    protected, ids = _protected(root, config.cache_root)
    checked = VolumePath(url, field, root, tuple(parts), protected, ids)
    folded = tuple(p.casefold() for p in parts)
    if any(folded[: len(p)] == p for p in protected):
        raise checked.refuse(_PROTECTED)
    return checked


_PROTECTED = "is the worker's own cache on the volume; no job may read or change it"


def _protected(
    root: Path, cache_root: Path
) -> tuple[tuple[tuple[str, ...], ...], frozenset[tuple[int, int]]]:
    names: set[tuple[str, ...]] = {(DEFAULT_CACHE_NAME.casefold(),)}
    ids: set[tuple[int, int]] = set()
    for candidate in (cache_root, root / DEFAULT_CACHE_NAME):
        real = Path(os.path.realpath(candidate))
        if real == root or root in real.parents:
            names.add(tuple(p.casefold() for p in real.relative_to(root).parts))
        with contextlib.suppress(OSError):
            info = os.stat(candidate)
            ids.add((info.st_dev, info.st_ino))
    return tuple(sorted(n for n in names if n)), frozenset(ids)


def _is_protected(info: os.stat_result, vp: VolumePath) -> bool:
    return (info.st_dev, info.st_ino) in vp.protected_ids


@contextlib.contextmanager
def directory(vp: VolumePath, depth: int | None = None, create: bool = False) -> Iterator[int]:
    """A descriptor of the directory `parts[:depth]` (default: the parent of the last part).

    Walked from the root without following links; with `create`, missing folders are made.
    A folder that does not exist raises FileNotFoundError (the caller words the error).
    """
    depth = len(vp.parts) - 1 if depth is None else depth
    fd = os.open(vp.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in vp.parts[:depth]:
            parent, fd = fd, -1  # _step closes the parent, whatever happens
            fd = _step(parent, name, vp, create)
        yield fd
    finally:
        if fd >= 0:
            os.close(fd)


def _step(parent: int, name: str, vp: VolumePath, create: bool) -> int:
    """Open `name` under `parent` as a directory, never through a link; closes `parent`."""
    try:
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, dir_fd=parent)
            child = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except NotADirectoryError:
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                raise vp.refuse(
                    f"leads through a symbolic link ({shorten(name, 60)}); links on the volume "
                    "are not followed"
                ) from None
            raise vp.refuse(
                f"goes through {shorten(name, 60)}, which is a file, not a folder"
            ) from None
        if _is_protected(os.fstat(child), vp):
            os.close(child)
            raise vp.refuse(_PROTECTED)
        return child
    finally:
        os.close(parent)


def lstat(vp: VolumePath) -> os.stat_result | None:
    """The entry's own status (a link is not followed), or None when there is none."""
    if not vp.parts:
        return os.stat(vp.root)
    try:
        with directory(vp) as parent:
            return os.stat(vp.name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def kind(info: os.stat_result) -> str:
    """What a listing calls an entry: file, directory, symlink or other."""
    if stat.S_ISLNK(info.st_mode):
        return "symlink"
    if stat.S_ISDIR(info.st_mode):
        return "directory"
    return "file" if stat.S_ISREG(info.st_mode) else "other"


def regular_file(vp: VolumePath) -> Path:
    """The checked path of an existing regular file (not a link, not a folder)."""
    info = lstat(vp)
    if info is None:
        raise vp.refuse("names no file on the volume")
    if not stat.S_ISREG(info.st_mode):
        raise vp.refuse(f"is a {kind(info)}, not a file; name a file")
    return vp.path


def entries(vp: VolumePath) -> list[tuple[str, os.stat_result]]:
    """The folder's entries with their own status, the worker's own folders left out."""
    try:
        with directory(vp, depth=len(vp.parts)) as fd:
            found = []
            with os.scandir(fd) as scan:
                for entry in scan:
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode) and _is_protected(info, vp):
                        continue
                    if any(
                        (*[p.casefold() for p in vp.parts], entry.name.casefold()) == p
                        for p in vp.protected
                    ):
                        continue
                    found.append((entry.name, info))
            return found
    except FileNotFoundError:
        raise vp.refuse("names no folder on the volume") from None
    except NotADirectoryError:
        raise vp.refuse("is a file, not a folder") from None


def unlink(vp: VolumePath) -> None:
    """Delete a file or a link (never what it points to, never a folder)."""
    info = lstat(vp)
    if info is None or stat.S_ISDIR(info.st_mode):
        raise vp.refuse("names no file on the volume (only files are deleted, never folders)")
    with directory(vp) as parent:
        os.unlink(vp.name, dir_fd=parent)


def check_destination(vp: VolumePath) -> None:
    """A destination names a file: not the volume's root, not an existing folder."""
    if not vp.parts or vp.url.endswith("/"):
        raise vp.refuse("names a folder; name the file, such as volume://outputs/result.bin")
    info = lstat(vp)
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise vp.refuse("is a folder on the volume; name a file in it")


@contextlib.contextmanager
def atomic_writer(vp: VolumePath) -> Iterator[IO[bytes]]:
    """A file that appears at `vp` complete, or not at all.

    The bytes go to a new temporary file in the destination's own folder (on the volume,
    created without following links, O_EXCL), renamed over the name at the end.
    """
    check_destination(vp)
    with directory(vp, create=True) as parent:
        tmp = f".part-{os.urandom(6).hex()}"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o644, dir_fd=parent)
        try:
            with os.fdopen(fd, "w+b") as out:  # readable too: the hashing writer reads back
                yield out
            try:
                os.rename(tmp, vp.name, src_dir_fd=parent, dst_dir_fd=parent)
            except IsADirectoryError:
                raise vp.refuse("is a folder on the volume; name a file in it") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)


def files_in(config: HandlerConfig, *folder: str) -> list[Path]:
    """Regular files (not links) directly in a folder of the volume; [] when there is none.

    For the handlers' own model folders (tts voices): a link there, or on the way there, is
    left out rather than followed.
    """
    try:
        vp = parse("volume://" + "/".join(folder), "volume", config)
        return sorted(vp.path / name for name, info in entries(vp) if stat.S_ISREG(info.st_mode))
    except (JobError, OSError):
        return []
