"""A packed env's rest (bootstrap/packed.py split_rest), hydrated while the worker imports.

The volume is a local directory here (tests/integration/test_volume_starts.py runs the same
on MooseFS); the child that hydrates the rest is the real one, in its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bootstrap.backfill import merge
from bootstrap.cache import Layout, write_manifest
from bootstrap.packed import hydrate, names_in_rest, pack, rest_names, scan, split_rest, unpack_rest
from bootstrap.store import MARKER, find, sentinels

REPO = Path(__file__).resolve().parents[2]
KEY = "storage-none-cp311-0123456789abcdef"


def make_site(root: Path) -> Path:
    """Packages a worker imports, one it does not, headers, data and metadata."""
    site = root / "site"
    files = {
        "used/__init__.py": "from used import core\n",
        "used/core.py": "VALUE = 1\n",
        "used/spare.py": "SPARE = 2\n",  # in a package that is imported, itself not
        "used/data.json": "{}",
        "used/_speed.cpython-311-x86_64-linux-gnu.so": "ELF",  # an extension module imported
        "used/_spare.cpython-311-x86_64-linux-gnu.so": "ELF",  # one not imported
        "used/libhelper.so.1": "ELF",  # a shared library: loaded by the linker, never rest
        "idle/__init__.py": "IDLE = 3\n",  # a package nothing imports: all of it is rest
        "idle/deep/__init__.py": "",
        "idle/deep/leaf.py": "LEAF = 4\n",
        "mixed/__init__.py": "",  # not imported, with data: all of it is rest as well
        "mixed/table.bin": "x" * 100,
        "used/extra/__init__.py": "",  # a subpackage nothing imports: its data goes with it
        "used/extra/assets/icon.png": "PNG",
        "used/extra/helper.py": "HELP = 7\n",
        "spaced/sub/__init__.py": "",  # in a namespace package that would vanish: stays
        "spaced/sub/table.bin": "z" * 100,
        "linked/__init__.py": "",  # not imported, but a shared library keeps it there at once
        "linked/table.bin": "y" * 100,
        "linked/libcodec.so.2": "ELF",
        "read/__init__.py": "",  # not imported, but an import opened its data
        "read/words.txt": "words\n",
        "top.json": "{}",  # data outside any package
        "mixed/tool.py": "TOOL = 5\n",
        "mixed/kernel.cu": "__global__ void k() {}\n",
        "mixed/_fast.abi3.so": "ELF",
        "solo.py": "SOLO = 6\n",
        "torch/include/ATen/core.h": "#pragma once\n",
        "used-1.0.dist-info/RECORD": "used/__init__.py,,\n",
    }
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    return site


LOADED = frozenset(
    {
        "used/__init__.py",
        "used/core.py",
        "used/_speed.cpython-311-x86_64-linux-gnu.so",
        "read/words.txt",  # opened, not imported
    }
)


def names(entries: tuple[tuple[str, int], ...]) -> set[str]:
    return {rel for rel, _size in entries}


def test_the_rest_is_source_the_imports_do_not_open(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    tree = scan(site, LOADED)
    assert names(tree.rest) == {
        "used/spare.py",
        "idle/__init__.py",
        "idle/deep/__init__.py",
        "idle/deep/leaf.py",
        "mixed/__init__.py",
        "mixed/table.bin",
        "used/extra/__init__.py",
        "used/extra/assets/icon.png",
        "used/extra/helper.py",
        "mixed/tool.py",
        "mixed/kernel.cu",
        "mixed/_fast.abi3.so",
        "used/_spare.cpython-311-x86_64-linux-gnu.so",
        "solo.py",
        "torch/include/ATen/core.h",
    }
    # What the imports open, the data of the packages they use, metadata, and the __init__.py
    # of every package directory that exists without the rest (else it would import as an
    # empty namespace package), with that package's data.
    assert {"used/core.py", "used/data.json", "top.json"} <= names(tree.small)
    assert {"spaced/sub/__init__.py", "spaced/sub/table.bin"} <= names(tree.small)
    assert {"linked/__init__.py", "linked/table.bin", "linked/libcodec.so.2"} <= names(tree.small)
    assert {"read/__init__.py", "read/words.txt"} <= names(tree.small)
    assert {"used/_speed.cpython-311-x86_64-linux-gnu.so", "used/libhelper.so.1"} <= names(
        tree.small
    )
    assert names(tree.small).isdisjoint(names(tree.rest))
    assert scan(site).rest == ()  # nothing recorded, nothing left for later


def test_links_and_empty_directories_stay_first_whatever_their_names(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    (site / "link.py").symlink_to("solo.py")
    (site / "dirlink.py").symlink_to("idle")
    (site / "empty.py").mkdir()
    tree = scan(site, LOADED)
    assert {"link.py", "dirlink.py", "empty.py"} <= names(tree.small)
    assert "solo.py" in names(tree.rest)
    first, rest = split_rest([("a.py", 0), ("b.py", 9)], frozenset(), frozenset({"a.py"}))
    assert names(first) == {"a.py"} and names(rest) == {"b.py"}


def test_the_rest_names_what_only_it_can_satisfy_and_not_what_lies_inside(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    tree = scan(site, LOADED)
    # used.spare and used._spare are modules of the rest in a package that is there at once,
    # as used.extra is a package of the rest; idle and mixed are packages of the rest
    # (idle.deep inside it waits for idle first); torch only holds headers, but would import
    # as a namespace package once they are in.
    assert rest_names(tree.small, tree.rest) == {
        "": "idle mixed solo torch",
        "used": "_spare extra spare",
    }
    assert rest_names((("a/__init__.py", 1),), (("a/b/c.py", 1), ("d.pyc", 1))) == {
        "a": "b",
        "": "d",
    }
    parts = pack(site, tmp_path / "volume-env", tree)
    assert names_in_rest(parts) == rest_names(tree.small, tree.rest)
    assert names_in_rest({"format": "packed-3", "archives": [], "big": []}) is None


def tree_of(site: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()
    }


def test_first_part_then_the_rest_gives_the_whole_tree(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    volume_env = tmp_path / "volume-env"
    parts = pack(site, volume_env, scan(site, LOADED))
    archives = parts["archives"]
    assert isinstance(archives, list) and [a.get("rest", False) for a in archives] == [
        False,
        True,
    ]
    local = tmp_path / "local" / "site"
    hydrate(volume_env, parts, local, copy_big=False, rest=False)
    first = tree_of(local)
    assert "used/core.py" in first and "idle/deep/leaf.py" not in first
    assert "solo.py" not in first and not (local / "idle").exists()
    unpack_rest(volume_env, parts, tmp_path / "local" / "rest")
    merge(tmp_path / "local" / "rest", local)
    assert tree_of(local) == tree_of(site)
    # An older worker, which knows nothing of the rest, unpacks every archive at once.
    everything = tmp_path / "old" / "site"
    hydrate(volume_env, parts, everything, copy_big=False)
    assert tree_of(everything) == tree_of(site)


def test_merge_moves_a_missing_directory_whole_and_files_one_by_one(tmp_path: Path) -> None:
    rest, site = tmp_path / "rest", tmp_path / "site"
    for rel in ("new/a.py", "new/deep/b.py", "old/c.py", "old/__pycache__/c.pyc", "d.py"):
        (rest / rel).parent.mkdir(parents=True, exist_ok=True)
        (rest / rel).write_text(rel)
    (site / "old" / "__pycache__").mkdir(parents=True)  # an import wrote bytecode meanwhile
    (site / "old" / "__pycache__" / "c.pyc").write_text("the worker's own")
    new_inode = os.stat(rest / "new").st_ino
    moved = merge(rest, site)
    assert moved == 4  # new/ in one rename; old/c.py, old/__pycache__/c.pyc, d.py
    assert os.stat(site / "new").st_ino == new_inode  # renamed, not copied
    assert (site / "old" / "__pycache__" / "c.pyc").read_text() == "old/__pycache__/c.pyc"
    assert (site / "new" / "deep" / "b.py").read_text() == "new/deep/b.py"


def publish(tmp_path: Path) -> tuple[Layout, str]:
    """A packed env with a rest on a 'volume' (a local dir); its manifest's sha256."""
    import hashlib

    site = make_site(tmp_path / "build")
    cache = Layout(tmp_path / "cache")
    env = cache.env_dir(KEY)
    parts = pack(site, env, scan(site, LOADED))
    write_manifest(env, {"key": KEY, "sentinels": sentinels(site), "parts": parts})
    return cache, hashlib.sha256((env / "manifest.json").read_bytes()).hexdigest()


# A worker in miniature: hydrate what the imports need, import, wait for the whole env.
WORKER = r"""
import json, os, sys, threading, time
from pathlib import Path
from bootstrap import store
from bootstrap.cache import Layout
from bootstrap.hydration import hydrate_env
from bootstrap.log import StartLog
from bootstrap.settings import load_settings
from bootstrap.start import Start

cache, local, key, go = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
settings = load_settings({**os.environ, "RUNPOD_SLIM_CACHE": str(cache),
                          "RUNPOD_SLIM_LOCAL_DIR": str(local), "HANDLER_TYPE": "storage"})
said = []
ctx = Start(settings, Layout(cache), Layout(local), "packed", StartLog(said.append), os.environ,
            None, None, lambda s: None)
found = store.find(ctx.layout, ctx.local, key)
env = hydrate_env(key, found, ctx, whole=False)
env.activate()
import used  # what the smoke test imported is there at once
seen_before = os.path.exists(os.path.join(env.site_dir, "idle"))
main = threading.main_thread().ident

def release():
    # The rest is held back until `go` exists; it is let in once the import of it waits.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(main)
        while frame is not None and frame.f_code.co_name != "settle":
            frame = frame.f_back
        if frame is not None and "backfill" in frame.f_code.co_filename:
            break
        time.sleep(0.005)
    open(go, "w").close()

# The child hydrating the rest runs behind the worker: at the lowest priority.
stat, deadline = "", time.monotonic() + 30
while time.monotonic() < deadline:
    stat = open(f"/proc/{env.backfill._proc.pid}/stat").read().rsplit(")", 1)[1].split()
    if stat[16] != "0":
        break
    time.sleep(0.005)
report = {"idle_before": seen_before, "said": said, "rest_nice": int(stat[16])}
# An optional dependency that is not installed fails at once, rest or no rest.
try:
    import not_installed_anywhere
except ImportError as exc:
    report["optional"] = [str(exc), env.backfill.done()]
if go != "-":
    threading.Thread(target=release, daemon=True).start()
try:
    from idle.deep import leaf
    report["leaf"] = leaf.LEAF
except ImportError as exc:
    report["leaf"] = str(exc)
try:
    env.wait_whole()
    report["whole"] = True
except Exception as exc:
    report["whole"] = str(exc)
print(json.dumps(report))
"""


def run_worker(tmp_path: Path, cache: Layout, failpoint: str) -> subprocess.CompletedProcess[str]:
    local = tmp_path / "local"
    go = str(local / "envs" / KEY / "rest.go") if failpoint == "hold-rest" else "-"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RUNPOD_SLIM_FAILPOINT": failpoint}
    return subprocess.run(
        [sys.executable, "-c", WORKER, str(cache.root), str(local), KEY, go],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_import_of_the_rest_waits_for_it_and_the_env_ends_whole(tmp_path: Path) -> None:
    cache, digest = publish(tmp_path)
    run = run_worker(tmp_path, cache, "hold-rest")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report == {**report, "leaf": 4, "idle_before": False, "whole": True, "rest_nice": 19}
    # ... while the rest was still held back: the miss was not made to wait for it.
    assert report["optional"] == ["No module named 'not_installed_anywhere'", False]
    assert any("the rest, 1 archives" in line for line in report["said"]), report["said"]
    local = Layout(tmp_path / "local")
    marker = json.loads((local.env_dir(KEY) / MARKER).read_text())
    assert marker["manifest_sha256"] == digest
    assert not (local.env_dir(KEY) / "rest").exists()
    assert tree_of(local.env_dir(KEY) / "site") == tree_of(tmp_path / "build" / "site")
    found = find(cache, local, KEY)
    assert found.env is not None and found.detail == "warm, hydrated on this container's disk"


def test_a_killed_rest_is_never_taken_for_whole_and_the_next_start_hydrates_again(
    tmp_path: Path,
) -> None:
    cache, _digest = publish(tmp_path)
    run = run_worker(tmp_path, cache, "after-rest-unpack")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    # The import of a module of the rest fails (it never came), and the worker is told why.
    assert report["leaf"] == "No module named 'idle'"
    assert report["whole"] == (
        f"the process hydrating the rest of env {KEY} was killed (signal 9); the next start "
        f"on this container hydrates it again"
    )
    local = Layout(tmp_path / "local")
    assert not (local.env_dir(KEY) / MARKER).exists()
    assert find(cache, local, KEY).env is None  # not whole: hydrated again, never used
    again = run_worker(tmp_path, cache, "")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["whole"] is True
    assert (local.env_dir(KEY) / MARKER).exists()
    assert tree_of(local.env_dir(KEY) / "site") == tree_of(tmp_path / "build" / "site")


def test_a_damaged_rest_sets_the_env_aside_and_says_so_in_one_line(tmp_path: Path) -> None:
    cache, _digest = publish(tmp_path)
    parts = json.loads((cache.env_dir(KEY) / "manifest.json").read_text())["parts"]
    [rest] = [a for a in parts["archives"] if a.get("rest")]
    archive = cache.env_dir(KEY) / "parts" / rest["name"]
    archive.write_bytes(archive.read_bytes()[:-20] + b"\0" * 20)
    run = run_worker(tmp_path, cache, "")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["leaf"] == "No module named 'idle'"  # a damaged rest never lands
    assert report["whole"].startswith(f"env {KEY} on the volume is damaged (")
    assert report["whole"].endswith("; it was set aside, and the next start installs it again")
    assert not cache.env_dir(KEY).exists()  # set aside: the next start installs it again
