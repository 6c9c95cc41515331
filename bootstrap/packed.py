"""An env on the network volume as a few large files, and its copy on container-local disk.

RunPod's network volume is MooseFS: every lookup, open and create is a round trip to its
master, so an env of 7,000 to 35,000 small files used in place there starts many times slower
than from local disk, and installing it file by file into the volume is slower still. What the
volume does well is stream large files. So a published env is

    envs/<key>/manifest.json           written last; lists every part with its size and sha256
    envs/<key>/parts/small-NNN.tar.zst the small files (and every directory and symlink), in
                                       archives of about ARCHIVE_BYTES, so several stream at once
    envs/<key>/parts/big/<path>        each file of BIG_FILE_BYTES or more, as it is, at its path
                                       in the env (so `$ORIGIN` RPATHs resolve beside it)

and a worker hydrates it onto container-local disk at start: the archives are streamed, hashed
and unpacked in parallel; the large files are either linked (the default: a process reads only
the pages it touches, as the local page cache would) or copied and hashed ("eager"). Nothing
is used before every part has checked out, and the local copy is renamed into place whole.

GNU tar does the packing and unpacking (it is in every base image this worker runs on, and on
two cores it is several times faster than the tarfile module); Python streams its bytes to and
from the volume, compressing or decompressing them and hashing them on the way. The archives
are zstd (level 3, through the system's libzstd: bootstrap/zstd.py), or gzip (zlib level 1)
where no libzstd can be loaded; each archive says which. An audio env's 554 MB of small files
pack into 131 MB with zstd (165 MB with zlib), which decompress at a fifth of zlib's CPU: on
two cores, the CPU a start spends is what it waits for (BENCHMARKS.md). Uncompressed
archives were measured too: they cost the MooseFS client and servers more than they save.
Large files are mostly machine code that compresses less well, and must stay readable in
place when linked: they travel as they are.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from . import zstd
from .errors import CacheError

T = TypeVar("T")
FORMAT = "packed-3"  # packed-2 had gzip archives only (plan.KEY_SCHEMA changed with it)
_LEVEL = 1  # zlib, where there is no libzstd: fast enough to keep up with the volume
BIG_FILE_BYTES = 1 << 20
ARCHIVE_BYTES = 64 << 20
PARTS = "parts"
BIG = "big"
# What only an import of that very module opens (Python source, bytecode, extension modules:
# `name.cpython-311-x86_64-linux-gnu.so`, `name.abi3.so`), or no import at all (stubs, Cython
# and C/C++/CUDA sources, headers: read by compilers). See split_rest.
REST_SUFFIXES = (
    ".py", ".pyc", ".pyi", ".pxd", ".pyx",
    ".h", ".hh", ".hpp", ".hxx", ".cuh", ".inl", ".c", ".cc", ".cpp", ".cxx", ".cu",
)  # fmt: skip
_EXTENSION_MODULE = re.compile(r"\.(cpython-[0-9]+[^./]*|abi3)\.so$")
_SHARED_LIBRARY = re.compile(r"\.so(\.[0-9]+)*$")
_CHUNK = 4 << 20
_GROUP = 8 << 20  # what one read-ahead task reads at most (_read_ahead)
# Streams at once: MooseFS serves parallel streams well (RunPod PR #538: 4-8x serial), and
# the hashing releases the GIL, so a few threads keep both cores and the network busy.
WORKERS = 6


class DamagedEnvError(CacheError):
    """A published env's parts do not match its manifest; it must be set aside and rebuilt."""


class _LostDirectoryRace(Exception):
    """tar could not create a file whose parent directory another tar was creating."""


_RACE = ": Cannot open: No such file or directory"
_FAILED = "Exiting with failure status due to previous errors"


@dataclass(frozen=True)
class Tree:
    """What a site directory holds, split by how it travels."""

    small: tuple[tuple[str, int], ...]  # (relative path, bytes): files, symlinks, directories
    big: tuple[tuple[str, int, bool], ...]  # (relative path, bytes, executable)
    rest: tuple[tuple[str, int], ...] = ()  # small files a worker's imports do not open


def scan(site: Path, loaded: frozenset[str] | None = None) -> Tree:
    """Split `site` into small entries (archived), big files (as they are) and, given the
    module files the smoke test's imports `loaded`, the rest (archived apart: see split_rest).
    """
    small: list[tuple[str, int]] = []
    big: list[tuple[str, int, bool]] = []
    not_files: set[str] = set()  # links and empty directories: never in the rest
    for root, dirs, names in os.walk(site):
        rel_root = os.path.relpath(root, site)
        for name in sorted(dirs):
            path = os.path.join(root, name)
            if os.path.islink(path):  # a symlink to a directory travels as a link
                small.append((_rel(rel_root, name), 0))
                not_files.add(small[-1][0])
        for name in sorted(names):
            path = os.path.join(root, name)
            st = os.lstat(path)
            rel = _rel(rel_root, name)
            if os.path.islink(path) or st.st_size < BIG_FILE_BYTES:
                small.append((rel, st.st_size))
                if os.path.islink(path):
                    not_files.add(rel)
            else:
                big.append((rel, st.st_size, bool(st.st_mode & 0o111)))
        if not names and not dirs and rel_root != ".":
            small.append((rel_root, 0))  # an empty directory is kept too
            not_files.add(rel_root)
    if loaded is None:
        return Tree(tuple(small), tuple(big))
    first, rest = split_rest(small, loaded, frozenset(not_files))
    return Tree(first, tuple(big), rest)


def split_rest(
    small: list[tuple[str, int]], loaded: frozenset[str], not_files: frozenset[str]
) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
    """(what a worker needs before it imports, the rest), of the small entries (pure).

    The rest is what a worker's imports do not open: the source, bytecode and extension
    modules of modules the smoke test did not import, stubs, and C sources and headers (read
    by compilers, at a job's first kernel build at the earliest); and the data of a package
    none of whose modules the smoke test loaded (botocore's service models, matplotlib's fonts:
    44 MB of the 145 MB an audio env's imports otherwise wait for), unless its imports opened
    it (`loaded` holds what Python opened too) or it is a shared library (the dynamic linker
    loads those by path, for any package).

    A worker imports while the rest is hydrated beside its env and moved in
    (bootstrap/backfill.py), so the rest must never make a package look other than it is: a
    package's __init__.py is never in the rest when its directory exists without the rest, or
    that directory would import as an empty namespace package; and a package's data goes to
    the rest only with the whole package, so that importing it waits for the rest, and never
    takes the directory of a namespace package with it.
    """
    packages = {os.path.dirname(rel) for rel, _size in small if rel.endswith("/__init__.py")}
    used = {_package(rel, packages) for rel in loaded}
    later: set[str] = set()
    idle: dict[str, list[str]] = {}  # package -> its data, if the package is not used
    for rel, _size in small:
        if rel in loaded or rel in not_files:
            continue
        if rel.endswith(REST_SUFFIXES) or _EXTENSION_MODULE.search(rel):
            later.add(rel)
        elif not _SHARED_LIBRARY.search(rel):
            package = _package(rel, packages)
            if package is not None and package not in used:
                idle.setdefault(package, []).append(rel)
    waiting = later.union(*idle.values())
    present = _directories(entry for entry in small if entry[0] not in waiting)
    for package, data in idle.items():
        # Else something of it is there at once: its data too. And a namespace package that
        # holds it never goes for data moved: .pth files run before the rest is in, and a
        # namespace package's -nspkg.pth (pyannote's) fails without its directory.
        above = _directories([(package, 0)])  # the directories it lies in
        if package not in present and all(d in present for d in above if d not in packages):
            later.update(data)
    present = _directories(entry for entry in small if entry[0] not in later)
    later -= {
        rel
        for rel in later
        if os.path.basename(rel) == "__init__.py" and os.path.dirname(rel) in present
    }
    return (
        tuple(entry for entry in small if entry[0] not in later),
        tuple(entry for entry in small if entry[0] in later),
    )


def _package(rel: str, packages: set[str]) -> str | None:
    """The innermost package directory `rel` lies in (pure); None outside any."""
    folder = os.path.dirname(rel)
    while folder:
        if folder in packages:
            return folder
        folder = os.path.dirname(folder)
    return None


def rest_names(
    first: tuple[tuple[str, int], ...], rest: tuple[tuple[str, int], ...]
) -> dict[str, str]:
    """What an import can find only once the rest is in (pure): {dir under site: "name ..."}.

    A module ("torch": "_VF" for torch/_VF.py), a package whose __init__ is in the rest, and a
    directory the first part lacks (it would import as a namespace package); but nothing
    inside such a package or directory, as importing it waits for the rest first. A worker
    whose import misses a name not listed is not held back until the rest is in (RestFinder).
    """
    present = _directories(first)
    names: set[str] = set()
    for rel, _size in rest:
        folder, base = os.path.split(rel)
        if base.endswith(".py") or (base.endswith(".pyc") and "__pycache__" not in folder):
            stem = base.rpartition(".")[0]
        elif _EXTENSION_MODULE.search(base):
            stem = base.split(".", 1)[0]
        else:
            stem = ""
        if stem == "__init__":
            names.add(folder)
        elif stem:
            names.add(f"{folder}/{stem}" if folder else stem)
        while folder not in present:
            names.add(folder)
            present.add(folder)  # each missing directory once
            folder = os.path.dirname(folder)
    grouped: dict[str, list[str]] = {}
    for name in sorted(names):
        folder, _, last = name.rpartition("/")
        if folder not in names:
            grouped.setdefault(folder, []).append(last)
    return {folder: " ".join(lasts) for folder, lasts in grouped.items()}


def _directories(entries: Iterable[tuple[str, int]]) -> set[str]:
    """Every directory the entries lie in, up to the site itself ("")."""
    present = {""}
    for rel, _size in entries:
        parent = os.path.dirname(rel)
        while parent not in present:
            present.add(parent)
            parent = os.path.dirname(parent)
    return present


def shard(entries: tuple[tuple[str, int], ...], limit: int = ARCHIVE_BYTES) -> list[list[str]]:
    """Consecutive runs of entries of about `limit` bytes each (pure; order kept)."""
    shards: list[list[str]] = [[]]
    size = 0
    for rel, nbytes in entries:
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(rel)
        size += nbytes + 512  # a tar header per member
    return shards


def with_directories(members: list[str]) -> list[str]:
    """The members, each preceded by those of its parent directories not named yet (pure).

    Archives unpacked in parallel into one tree then make their directories as directory
    entries, which GNU tar creates whether or not another tar made them first (see
    _unpack_all).
    """
    named: set[str] = set()
    out: list[str] = []
    for rel in members:
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent not in named:
                named.add(parent)
                out.append(parent)
        out.append(rel)
    return out


def pack(site: Path, env_dir: Path, tree: Tree | None = None) -> dict[str, object]:
    """Write `site` as parts under env_dir/parts; returns the manifest's "parts" entry."""
    tree = tree or scan(site)
    parts = env_dir / PARTS
    (parts / BIG).mkdir(parents=True)
    for rel, _size, _x in tree.big:
        (parts / BIG / rel).parent.mkdir(parents=True, exist_ok=True)

    sizes = dict(tree.small + tree.rest)

    codec = "zstd" if zstd.available() else "gzip"

    def archive(index: int, members: list[str]) -> dict[str, object]:
        name = f"small-{index:03d}.tar.{_SUFFIX[codec]}"
        size, digest = _tar_create(site, with_directories(members), parts / name, codec)
        unpacked = sum(sizes[m] for m in members)
        return {
            "name": name,
            "codec": codec,
            "size": size,
            "sha256": digest,
            "members": len(members),
            "unpacked": unpacked,
        }

    def store(rel: str, size: int, executable: bool) -> dict[str, object]:
        with (site / rel).open("rb") as src:
            written, digest = _stream(_chunks(src), parts / BIG / rel)
        if written != size:
            raise CacheError(f"{site / rel} changed while it was being published")
        if executable:
            os.chmod(parts / BIG / rel, 0o755)
        return {"path": rel, "size": size, "sha256": digest, "executable": executable}

    def archive_rest(index: int, members: list[str]) -> dict[str, object]:
        return {**archive(index, members), "rest": True}

    first = shard(tree.small)
    archives = [functools.partial(archive, i, m) for i, m in enumerate(first)]
    archives += [
        functools.partial(archive_rest, len(first) + i, m)
        for i, m in enumerate(shard(tree.rest) if tree.rest else [])
    ]
    bigs = [functools.partial(store, *entry) for entry in tree.big]
    done = parallel([*archives, *bigs])
    published: dict[str, object] = {
        "format": FORMAT,
        "archives": done[: len(archives)],
        "big": done[len(archives) :],
    }
    if tree.rest:
        published["rest_names"] = rest_names(tree.small, tree.rest)
    return published


def hydrate(
    env_dir: Path,
    parts: dict[str, object],
    site: Path,
    *,
    copy_big: bool,
    hot: dict[str, list[list[int]]] | None = None,
    rest: bool = True,
) -> None:
    """Unpack a published env's parts into `site` (a new directory), checking every part.

    With linked large files, the byte ranges `hot` lists (what the smoke test's imports touched
    of each large file, recorded at install) are read ahead meanwhile, in a few large reads:
    the imports then find those pages in the page cache instead of faulting them in from the
    volume one round trip at a time. Without `rest`, the archives of the rest (split_rest) are
    left for unpack_rest.

    Raises DamagedEnvError naming the first part that is missing or not what the manifest says.
    """
    archives, bigs = _entries(parts)
    if not rest:
        archives = [a for a in archives if not a.get("rest")]
    site.mkdir(parents=True)
    volume_parts = env_dir / PARTS

    def place(entry: dict[str, object]) -> None:
        rel = str(entry["path"])
        source = volume_parts / BIG / rel
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if copy_big:
                with source.open("rb") as src:
                    _sequential(src.fileno())
                    _stream(_checked(src, source, entry), target)
                if entry.get("executable"):
                    os.chmod(target, 0o755)
                return
            size = os.stat(source).st_size
        except FileNotFoundError:
            raise DamagedEnvError(f"{source} is missing") from None
        if size != entry["size"]:
            raise DamagedEnvError(f"{source} has {size} bytes, its manifest says {entry['size']}")
        os.symlink(os.path.abspath(source), target)  # a relative cache path stays valid

    ahead = [] if copy_big else _read_ahead(volume_parts / BIG, hot or {})
    # All at once: each large file's check costs a round trip to the volume (0.1 s for an audio
    # env's 148 at +1 ms, when they came after the archives). Its directories may then exist
    # before an archive makes them, which archives packed here take in their stride (see
    # _unpack_all).
    _unpack_all(volume_parts, archives, site, ahead + [functools.partial(place, e) for e in bigs])


def unpack_rest(env_dir: Path, parts: dict[str, object], target: Path) -> int:
    """Unpack the archives of the rest (split_rest) into `target`; how many there were."""
    archives = [a for a in _entries(parts)[0] if a.get("rest")]
    target.mkdir(parents=True, exist_ok=True)
    _unpack_all(env_dir / PARTS, archives, target)
    return len(archives)


def _unpack_all(
    volume_parts: Path,
    archives: list[dict[str, object]],
    target: Path,
    beside: list[Callable[[], None]] | None = None,
) -> None:
    """Unpack archives into `target` in parallel (with the tasks `beside` them).

    GNU tar creates a file's missing parent directory, but gives up on the file when another
    tar made that directory first. Archives packed here name each member's directories as
    entries of their own, first, which tar creates whatever exists; an archive packed without
    them that loses such a race is unpacked again once the others are done.
    """
    raced: list[dict[str, object]] = []

    def unpack(entry: dict[str, object]) -> None:
        try:
            _unpack(volume_parts, entry, target)
        except _LostDirectoryRace:
            raced.append(entry)

    tasks: list[Callable[[], None]] = [functools.partial(unpack, entry) for entry in archives]
    parallel(tasks + (beside or []))
    for entry in raced:
        try:
            _unpack(volume_parts, entry, target)
        except _LostDirectoryRace:
            raise DamagedEnvError(
                f"{volume_parts / str(entry['name'])} could not be unpacked: tar could not make "
                f"the directories of its files under {target}"
            ) from None


def has_rest(parts: dict[str, object]) -> bool:
    return any(a.get("rest") for a in _entries(parts)[0])


def names_in_rest(parts: dict[str, object]) -> dict[str, str] | None:
    """rest_names as published; None for an env published before they were (any name may be)."""
    names = parts.get("rest_names")
    if not isinstance(names, dict):
        return None
    return {k: v for k, v in names.items() if isinstance(k, str) and isinstance(v, str)}


def _unpack(volume_parts: Path, entry: dict[str, object], target: Path) -> None:
    source = volume_parts / str(entry["name"])
    try:
        with source.open("rb") as src:
            _sequential(src.fileno())
            chunks = _checked(src, source, entry)
            if entry.get("codec", "gzip") == "zstd":
                unpacked = _unzstd(chunks, source)
            else:
                unpacked = _inflate(chunks, source)
            _tar_extract(unpacked, target, source)
    except FileNotFoundError:
        raise DamagedEnvError(f"{source} is missing") from None


def _read_ahead(big_dir: Path, hot: dict[str, list[list[int]]]) -> list[Callable[[], None]]:
    """Tasks that read the hot ranges of the large files into the page cache, largest first.

    A task reads at most _GROUP bytes, so that the hottest files (56 and 51 MB of an audio
    env's 219) are read by several threads, not each by one while the others are done.
    """

    buffers = threading.local()  # one per thread, reused: no fresh pages for every task

    def read(rel: str, spans: list[tuple[int, int]]) -> None:
        buffer = getattr(buffers, "buffer", None)
        if buffer is None:
            buffer = buffers.buffer = memoryview(bytearray(min(_CHUNK, _GROUP)))
        with contextlib.suppress(OSError):  # only a head start: what is read is checked later
            fd = os.open(big_dir / rel, os.O_RDONLY)
            _sequential(fd)
            try:
                for start, length in spans:
                    for at in range(start, start + length, len(buffer)):
                        if not os.preadv(fd, [buffer[: min(len(buffer), start + length - at)]], at):
                            break
            finally:
                os.close(fd)

    groups = [
        (rel, group)
        for rel, spans in hot.items()
        if ".." not in rel
        for group in spans_in_groups(spans, _GROUP)
    ]
    groups.sort(key=lambda item: -sum(n for _s, n in item[1]))
    return [functools.partial(read, rel, group) for rel, group in groups]


def _sequential(fd: int) -> None:
    """Tell the kernel a file on the volume is read front to back: it then reads ahead twice
    as far, and asks the volume's client (FUSE) for 256 KiB at a time instead of 128 KiB. An
    audio start at +1 ms sent 1,390 read requests instead of 2,200 for its hot ranges, and the
    volume's processes spent 0.5 CPU-s less on the start (scratch runs, BENCHMARKS.md)."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


def spans_in_groups(spans: list[list[int]], limit: int) -> list[list[tuple[int, int]]]:
    """Consecutive (offset, length) spans in groups of at most `limit` bytes (pure; a span
    larger than what its group has left is cut)."""
    groups: list[list[tuple[int, int]]] = [[]]
    room = limit
    for start, length in spans:
        at, end = start, start + length
        while at < end:
            if room == 0:
                groups.append([])
                room = limit
            take = min(end - at, room)
            groups[-1].append((at, take))
            at, room = at + take, room - take
    return groups if groups[0] else []


def parallel(tasks: list[Callable[[], T]], workers: int = WORKERS) -> list[T]:
    """Run tasks on a few threads; their results in order, or the first task's error raised.

    Plain threads rather than concurrent.futures: a publish may still be running while the
    interpreter shuts down (a one-shot worker's background publish), when executors refuse work.
    """
    results: list[T | None] = [None] * len(tasks)
    errors: list[BaseException] = []
    todo = iter(enumerate(tasks))
    lock = threading.Lock()

    def work() -> None:
        while not errors:
            with lock:
                index, task = next(todo, (-1, None))
            if task is None:
                return
            try:
                results[index] = task()
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(min(workers, len(tasks)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def describe(parts: dict[str, object]) -> str:
    """'N archives and M large files', for the log."""
    archives, bigs = _entries(parts)
    return f"{len(archives)} archives and {len(bigs)} large files"


def small_bytes(parts: dict[str, object]) -> int:
    """Bytes the archives unpack to (what container disk needs at the least).

    Envs packed before archives said so give their compressed size: about a third of it.
    """
    archives, _ = _entries(parts)
    return sum(int(str(a.get("unpacked", a["size"]))) for a in archives)


def big_bytes(parts: dict[str, object]) -> int:
    _, bigs = _entries(parts)
    return sum(int(str(b["size"])) for b in bigs)


def _entries(parts: dict[str, object]) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    archives, bigs = parts.get("archives"), parts.get("big")
    if not (isinstance(archives, list) and isinstance(bigs, list)) or parts.get("format") != FORMAT:
        raise DamagedEnvError(f"its manifest does not describe a {FORMAT} env")
    return archives, bigs


def _rel(rel_root: str, name: str) -> str:
    return name if rel_root == "." else f"{rel_root}/{name}"


def _chunks(src: object) -> Iterator[bytes]:
    read = src.read  # type: ignore[attr-defined]
    while chunk := read(_CHUNK):
        yield chunk


def _checked(src: object, source: Path, entry: dict[str, object]) -> Iterator[bytes]:
    """The file's chunks; after the last one, its size and sha256 are checked."""
    digest = hashlib.sha256()
    size = 0
    for chunk in _chunks(src):
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        raise DamagedEnvError(
            f"{source} is damaged: not the file its manifest names ({size} bytes, sha256 "
            f"{digest.hexdigest()[:16]}...; expected {entry['size']} bytes, "
            f"{str(entry['sha256'])[:16]}...)"
        )


def _inflate(chunks: Iterator[bytes], source: Path) -> Iterator[bytes]:
    """Decompress a gzip stream (zlib releases the GIL, so archives inflate in parallel)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        for chunk in chunks:
            yield inflater.decompress(chunk)
        yield inflater.flush()
    except zlib.error:
        raise DamagedEnvError(f"{source} is damaged: its compressed stream is broken") from None
    if not inflater.eof:
        raise DamagedEnvError(f"{source} is damaged: it ends before its compressed stream does")


def _unzstd(chunks: Iterator[bytes], source: Path) -> Iterator[bytes]:
    if not zstd.available():
        raise CacheError(
            f"{source.name} is zstd-compressed and this container has no usable "
            f"{zstd.LIBRARY} (Ubuntu's libzstd1 package, in every Ubuntu 22.04 image): add it "
            f"to the image"
        )
    try:
        yield from zstd.decompress(chunks)
    except zstd.ZstdError as exc:
        raise DamagedEnvError(
            f"{source} is damaged: its compressed stream is broken ({exc})"
        ) from None


def _deflate(chunks: Iterator[bytes]) -> Iterator[bytes]:
    deflater = zlib.compressobj(_LEVEL, zlib.DEFLATED, 31)
    for chunk in chunks:
        yield deflater.compress(chunk)
    yield deflater.flush()


def _stream(chunks: Iterator[bytes], target: Path) -> tuple[int, str]:
    """Write chunks to a new file; (bytes, sha256)."""
    digest = hashlib.sha256()
    size = 0
    with target.open("xb") as out:
        for chunk in chunks:
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _tar() -> str:
    tar = shutil.which("tar")
    if tar is None:
        raise CacheError("GNU tar is not on PATH; the worker needs it to pack and unpack envs")
    return tar


_SUFFIX = {"zstd": "zst", "gzip": "gz"}


def _tar_create(site: Path, members: list[str], target: Path, codec: str) -> tuple[int, str]:
    argv = [_tar(), "-c", "-f", "-", "-C", str(site), "--no-recursion", "--null", "-T", "-"]
    names = b"".join(os.fsencode(m) + b"\0" for m in members)
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        # tar writes while it still reads names: feed it from a thread, or both pipes fill.
        feeder = threading.Thread(target=_feed, args=(proc.stdin, names), daemon=True)
        feeder.start()
        compress = zstd.compress if codec == "zstd" else _deflate
        result = _stream(compress(_chunks(proc.stdout)), target)
        feeder.join()
    if proc.returncode != 0:
        raise CacheError(f"tar could not archive {len(members)} files of {site}")
    return result


def _feed(pipe: IO[bytes], data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except BrokenPipeError:
        pass  # tar stopped early; its exit status says why


def _tar_extract(chunks: Iterator[bytes], site: Path, source: Path) -> None:
    argv = [_tar(), "-x", "-f", "-", "-C", str(site), "--no-same-owner"]
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=errors) as proc,
    ):
        assert proc.stdin is not None
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # tar stopped early; its exit status says why
        proc.wait()
        errors.seek(0)
        said = errors.read().decode(errors="replace").strip().splitlines()
    if proc.returncode != 0:
        last = said[-1] if said else f"exit status {proc.returncode}"
        if any(line.endswith(_RACE) for line in said) and all(
            line.endswith((_RACE, _FAILED)) for line in said
        ):
            raise _LostDirectoryRace(source)
        if "No space left" in last:
            raise CacheError(f"no space left on the disk of {site} while unpacking {source.name}")
        raise DamagedEnvError(f"{source} is damaged: it could not be unpacked ({last})")
