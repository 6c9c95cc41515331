"""bootstrap.packed: an env as archives and large files, and back, every part checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bootstrap import packed, zstd
from bootstrap.errors import CacheError
from bootstrap.packed import DamagedEnvError, hydrate, pack, scan, shard

BIG = packed.BIG_FILE_BYTES


def make_site(root: Path) -> Path:
    """A small site dir with what real ones hold: packages, a big .so, links, an empty dir."""
    site = root / "site"
    (site / "pkg" / "sub").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (site / "pkg" / "sub" / "data.txt").write_bytes(os.urandom(5000))
    (site / "pkg" / "_native.so").write_bytes(os.urandom(BIG + 17))
    (site / "pkg" / "_native.so").chmod(0o755)
    (site / "nvidia" / "cublas" / "lib").mkdir(parents=True)
    (site / "nvidia" / "cublas" / "lib" / "libcublas.so.12").write_bytes(os.urandom(2 * BIG))
    (site / "nvidia" / "cublas" / "lib" / "libcublas.so").symlink_to("libcublas.so.12")
    (site / "pkg-1.0.dist-info").mkdir()
    (site / "pkg-1.0.dist-info" / "RECORD").write_text("pkg/__init__.py,,\n")
    (site / "empty").mkdir()
    (site / "bin").mkdir()
    (site / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (site / "bin" / "tool").chmod(0o755)
    return site


def tree(site: Path) -> dict[str, object]:
    """Everything a reader sees of a tree: contents, link targets, exec bits, empty dirs."""
    seen: dict[str, object] = {}
    for folder, dirs, names in os.walk(site):
        rel = os.path.relpath(folder, site)
        if not dirs and not names:
            seen[rel] = "empty dir"
        for name in names:
            path = Path(folder) / name
            if path.is_symlink() and not os.readlink(path).startswith("/"):
                seen[f"{rel}/{name}"] = f"-> {os.readlink(path)}"
            else:
                seen[f"{rel}/{name}"] = (path.read_bytes(), os.access(path, os.X_OK))
    return seen


def test_shard_keeps_order_and_bounds_each_archive() -> None:
    entries = ((f"f{i}", 30 << 20) for i in range(5))
    assert [len(s) for s in shard(tuple(entries), limit=64 << 20)] == [2, 2, 1]
    assert shard(()) == [[]]


def without_libzstd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zstd, "available", lambda: False)


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
@pytest.mark.parametrize("copy_big", [False, True], ids=["link", "copy"])
def test_pack_then_hydrate_gives_the_same_tree(
    tmp_path: Path, copy_big: bool, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if codec == "gzip":  # as published where no libzstd could be loaded
        without_libzstd(monkeypatch)
    site = make_site(tmp_path)
    found = scan(site)
    assert sorted(rel for rel, _s, _x in found.big) == [
        "nvidia/cublas/lib/libcublas.so.12",
        "pkg/_native.so",
    ]
    parts = pack(site, tmp_path / "volume-env")
    assert len(parts["archives"]) == 1  # type: ignore[arg-type]
    suffix = {"zstd": "zst", "gzip": "gz"}[codec]
    assert parts["archives"][0]["name"] == f"small-000.tar.{suffix}"  # type: ignore[index]
    assert parts["archives"][0]["codec"] == codec  # type: ignore[index]
    out = tmp_path / "local" / "site"
    monkeypatch.undo()  # a worker with libzstd reads either
    hydrate(tmp_path / "volume-env", parts, out, copy_big=copy_big)
    assert tree(out) == tree(site)
    big = out / "pkg" / "_native.so"
    assert big.is_symlink() is not copy_big
    # Linked big files point into the volume's copy; copied ones are local files.
    if not copy_big:
        assert os.readlink(big) == str(tmp_path / "volume-env" / "parts" / "big" / "pkg/_native.so")
    json.dumps(parts)  # the manifest holds it as JSON


@pytest.mark.parametrize("where", [7, 700, -3])
@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_a_tampered_archive_is_refused_and_named(
    tmp_path: Path, codec: str, where: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if codec == "gzip":
        without_libzstd(monkeypatch)
    site = make_site(tmp_path)
    env = tmp_path / "volume-env"
    parts = pack(site, env)
    [archive] = (env / "parts").glob("small-000.tar.*")
    data = bytearray(archive.read_bytes())
    data[where] ^= 0xFF
    archive.write_bytes(bytes(data))
    # Whichever notices first (the codec, tar, or the sha256 at the end), the archive is named.
    with pytest.raises(DamagedEnvError, match=rf"{archive.name.replace('.', '[.]')} is damaged"):
        hydrate(env, parts, tmp_path / "local" / "site", copy_big=False)


def test_a_zstd_archive_where_libzstd_is_missing_is_one_sentence_not_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path)
    parts = pack(site, tmp_path / "volume-env")
    without_libzstd(monkeypatch)
    with pytest.raises(CacheError) as raised:
        hydrate(tmp_path / "volume-env", parts, tmp_path / "local" / "site", copy_big=False)
    assert not isinstance(raised.value, DamagedEnvError)  # the env is fine: never set aside
    assert str(raised.value) == (
        "small-000.tar.zst is zstd-compressed and this container has no usable libzstd.so.1 "
        "(Ubuntu's libzstd1 package, in every Ubuntu 22.04 image): add it to the image"
    )


def test_a_missing_or_resized_big_file_is_refused(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    env = tmp_path / "volume-env"
    parts = pack(site, env)
    big = env / "parts" / "big" / "pkg" / "_native.so"
    big.write_bytes(b"short")
    with pytest.raises(DamagedEnvError, match=r"_native\.so has 5 bytes, its manifest says"):
        hydrate(env, parts, tmp_path / "a" / "site", copy_big=False)
    with pytest.raises(DamagedEnvError, match=r"_native\.so is damaged: not the file"):
        hydrate(env, parts, tmp_path / "b" / "site", copy_big=True)
    big.unlink()
    with pytest.raises(DamagedEnvError, match=r"_native\.so is missing"):
        hydrate(env, parts, tmp_path / "c" / "site", copy_big=False)


def test_a_manifest_of_another_form_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DamagedEnvError, match="does not describe a packed-3 env"):
        hydrate(tmp_path, {"format": "packed-2"}, tmp_path / "site", copy_big=False)


def test_the_smoke_child_records_the_pages_its_imports_touch(tmp_path: Path) -> None:
    """The pagemap walk of smoke._SMOKE: pages an import maps of a large file, coalesced."""
    import subprocess
    import sys

    from bootstrap.smoke import _SMOKE

    site = tmp_path / "site"
    (site / "mapper").mkdir(parents=True)
    with (site / "mapper" / "blob.bin").open("wb") as blob:
        blob.write(os.urandom(16 * BIG))
        blob.flush()
        # Written back, but left in the page cache: the child takes it out before it imports,
        # or the kernel would map whole cached folios around each page touched.
        os.fsync(blob.fileno())
    (site / "mapper" / "__init__.py").write_text(
        "import mmap, os\n"
        "_f = open(os.path.join(os.path.dirname(__file__), 'blob.bin'), 'rb')\n"
        "_m = mmap.mmap(_f.fileno(), 0, prot=mmap.PROT_READ)\n"
        "_m[0]; _m[12 * 1024 * 1024]; _m[12 * 1024 * 1024 + 320 * 1024]\n"  # 12 MiB, 320 KiB apart
        "from mapper import _swapped\n"
        "open(os.path.join(os.path.dirname(__file__), '..', 'lexicon', 'words.txt')).read()\n"
    )
    # A package nothing imports, whose data an import reads all the same.
    (site / "lexicon").mkdir()
    (site / "lexicon" / "__init__.py").write_text("")
    (site / "lexicon" / "words.txt").write_text("words\n")
    # A module that puts another object in its place in sys.modules (as torch._VF does) leaves
    # no __file__ there; the file was loaded all the same.
    (site / "mapper" / "_swapped.py").write_text(
        "import sys, types\nsys.modules[__name__] = types.ModuleType(__name__)\n"
    )
    hot = tmp_path / "hot.json"
    subprocess.run(
        [sys.executable, "-s", "-c", _SMOKE, str(site), "0", "mapper"],
        env={**os.environ, "RUNPOD_SLIM_HOT_PAGES": str(hot)},
        check=True,
        capture_output=True,
    )
    touched = json.loads(hot.read_text())
    spans = touched["pages"]["mapper/blob.bin"]
    assert "mapper/__init__.py" in touched["modules"]  # and its bytecode, where it was written
    assert "mapper/_swapped.py" in touched["modules"]
    assert all(m.startswith("mapper/") for m in touched["modules"])  # nothing from outside
    assert {"lexicon/words.txt", "mapper/blob.bin", "mapper/__init__.py"} <= set(touched["opened"])
    assert all(m.startswith(("mapper/", "lexicon/")) for m in touched["opened"])
    page = os.sysconf("SC_PAGE_SIZE")
    # The kernel maps a few neighbours too (fault-around, large folios); the places stay apart,
    # even 320 KiB apart (what lies between is not read ahead).
    assert len(spans) == 3, spans
    assert spans[0][0] == 0 and spans[1][0] <= 12 * BIG < spans[1][0] + spans[1][1]
    assert spans[1][0] + spans[1][1] < 12 * BIG + (320 << 10) < spans[2][0] + spans[2][1]
    assert all(length % page == 0 and length <= 256 << 10 for _s, length in spans), spans


def test_hydrate_reads_hot_ranges_ahead_and_ignores_bad_ones(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    env = tmp_path / "volume-env"
    parts = pack(site, env)
    hot = {
        "pkg/_native.so": [[0, 8192], [BIG, 4096]],
        "../../outside": [[0, 10]],  # never read: not a path inside the env
        "gone.so": [[0, 10]],  # missing: a head start only, nothing fails
    }
    native = env / "parts" / "big" / "pkg" / "_native.so"
    evict(native)
    assert not resident(native, BIG, 4096)
    out = tmp_path / "local" / "site"
    hydrate(env, parts, out, copy_big=False, hot=hot)
    assert tree(out) == tree(site)
    assert resident(native, 0, 8192) and resident(native, BIG, 4096)


def test_hot_ranges_are_read_by_tasks_of_a_few_megabytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's hot ranges are shared out among tasks of at most _GROUP bytes, all read."""
    assert packed.spans_in_groups([[0, 5], [10, 3], [20, 9]], 6) == [
        [(0, 5), (10, 1)],
        [(11, 2), (20, 4)],
        [(24, 5)],
    ]
    assert packed.spans_in_groups([[0, 12]], 6) == [[(0, 6)], [(6, 6)]]
    assert packed.spans_in_groups([], 6) == []
    site = make_site(tmp_path)
    env = tmp_path / "volume-env"
    pack(site, env)
    native = env / "parts" / "big" / "pkg" / "_native.so"
    evict(native)
    monkeypatch.setattr(packed, "_GROUP", 64 << 10)
    tasks = packed._read_ahead(env / "parts" / "big", {"pkg/_native.so": [[0, 256 << 10]]})
    assert len(tasks) == 4
    assert not resident(native, 0, 256 << 10)
    for task in tasks:
        task()
    assert resident(native, 0, 256 << 10)


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident(path: Path, offset: int, length: int) -> bool:
    """Whether every page of the range is in the page cache (mincore(2) on a mapping of it)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    int_ = ctypes.c_int
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, int_, int_, int_, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    start = offset // mmap.PAGESIZE * mmap.PAGESIZE
    size = offset + length - start
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        pages = ctypes.create_string_buffer((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE)
        try:
            assert libc.mincore(address, size, pages) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
    return all(byte & 1 for byte in pages.raw)


def test_links_hold_when_the_cache_path_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(tmp_path)
    parts = pack(site, tmp_path / "volume-env")
    monkeypatch.chdir(tmp_path)  # RUNPOD_SLIM_CACHE=./... gives relative paths
    hydrate(Path("volume-env"), parts, tmp_path / "local" / "site", copy_big=False)
    monkeypatch.chdir("/")
    assert tree(tmp_path / "local" / "site") == tree(site)


def test_each_members_directories_come_first_and_once() -> None:
    assert packed.with_directories(["a/b/c.py", "a/b/d.py", "a/e.py", "f.py", "g/empty"]) == [
        "a", "a/b", "a/b/c.py", "a/b/d.py", "a/e.py", "f.py", "g", "g/empty"
    ]  # fmt: skip


def many_archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A site packed as 40 archives that all write into the same four directories."""
    site = tmp_path / "site"
    for i in range(40):
        (site / "pkg" / f"sub{i % 4}").mkdir(parents=True, exist_ok=True)
        (site / "pkg" / f"sub{i % 4}" / f"m{i}.py").write_bytes(os.urandom(3000))
    sharded = packed.shard
    monkeypatch.setattr(packed, "shard", lambda entries: sharded(entries, limit=6000))
    return site, tmp_path / "env"


def test_archives_unpacked_at_once_make_their_directories_without_racing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GNU tar gives up on a file whose missing parent another tar made first (about one
    hydration in 30 lost a file that way): directories are entries of their own now."""
    site, env = many_archives(tmp_path, monkeypatch)
    parts = pack(site, env, scan(site))
    assert len(parts["archives"]) == 40  # type: ignore[arg-type]
    for round_ in range(20):
        out = tmp_path / f"out{round_}" / "site"
        hydrate(env, parts, out, copy_big=False)
        assert tree(out) == tree(site)


def test_an_archive_that_lost_a_directory_race_is_unpacked_again_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As an archive packed before directories were entries of their own may."""
    site, env = many_archives(tmp_path, monkeypatch)
    parts = pack(site, env, scan(site))
    unpack, calls = packed._unpack, []

    def losing_once(volume_parts: Path, entry: dict[str, object], target: Path) -> None:
        calls.append(entry["name"])
        if entry["name"] == "small-003.tar.zst" and calls.count(entry["name"]) == 1:
            raise packed._LostDirectoryRace(entry["name"])
        unpack(volume_parts, entry, target)

    monkeypatch.setattr(packed, "_unpack", losing_once)
    hydrate(env, parts, tmp_path / "out" / "site", copy_big=False)
    assert tree(tmp_path / "out" / "site") == tree(site)
    assert calls[-1] == "small-003.tar.zst" and len(calls) == 41  # again, after all the others


def test_tar_failing_to_make_a_directory_is_told_apart_and_never_loops(tmp_path: Path) -> None:
    """The real message: a file whose parent is a dangling link cannot be made, twice."""
    site = tmp_path / "site"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "m.py").write_text("x = 1\n")
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as patch:
        patch.setattr(packed, "with_directories", lambda members: members)
        parts = pack(site, tmp_path / "env", scan(site))
    out = tmp_path / "out"
    out.mkdir()
    (out / "pkg").symlink_to("nowhere")  # open(pkg/m.py) fails, and so does mkdir(pkg)
    with pytest.raises(packed._LostDirectoryRace):
        packed._unpack(tmp_path / "env" / "parts", parts["archives"][0], out)  # type: ignore[index]
    with pytest.raises(DamagedEnvError, match="tar could not make the directories of its files"):
        packed._unpack_all(tmp_path / "env" / "parts", parts["archives"], out)  # type: ignore[arg-type]
