"""The smoke test: import what was installed, in a fresh interpreter, from the env and nowhere else.

It also records what a packed env's hydration needs first: the pages of the env's large files
that the imports touched, and the module files they loaded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import BootstrapError, SmokeTestError
from .plan import InstallPlan
from .runner import Runner

_SMOKE = r"""
import importlib, json, os, re, site, sys, traceback
from importlib import metadata
target, cuda, rest = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
split = rest.index("--") if "--" in rest else len(rest)
modules, distributions = rest[:split], rest[split + 1:]
site.addsitedir(target)
sys.path.remove(target)
sys.path.insert(0, target)
real = os.path.realpath(target) + os.sep

found = set()
if os.environ.get("RUNPOD_SLIM_HOT_PAGES"):
    # The large files out of the page cache first. Cached as the install wrote them (in large
    # folios), each page an import touches is mapped with its whole folio: the record of an
    # audio env held 312 MB where the imports touch 219 MB, all read ahead at every start.
    # Only clean pages leave; one still dirty stays, and with it its folio in the record (more
    # read ahead, never less). Waiting for write-back (fdatasync) cost a cold start 1.7 s.
    folders = [target]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    elif entry.is_file(follow_symlinks=False) and entry.stat(
                        follow_symlinks=False
                    ).st_size >= 1 << 20:
                        fd = os.open(entry.path, os.O_RDONLY)
                        try:
                            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        finally:
                            os.close(fd)
                except OSError:
                    pass
    # Every file the path finder found for these imports: a module may take another's place in
    # sys.modules (torch._VF does) and so leave no __file__ there to find afterwards.
    from importlib.machinery import PathFinder
    _find_spec = PathFinder.find_spec.__func__

    def _seen(cls, name, path=None, target=None):
        spec = _find_spec(cls, name, path, target)
        if spec is not None:
            found.update(p for p in (spec.origin, spec.cached) if isinstance(p, str))
        return spec

    PathFinder.find_spec = classmethod(_seen)

    # And every file Python opens meanwhile: a package's data that an import reads must be on
    # disk before the worker imports, even when that package's own modules are not loaded.
    opened = set()

    def _audit(event, args):
        if event == "open":
            try:
                opened.add(os.fsdecode(args[0]))
            except TypeError:  # a file descriptor: no path
                pass

    sys.addaudithook(_audit)

def inside(module):
    # A namespace package has no __file__, only __path__.
    places = [getattr(module, "__file__", None)] + list(getattr(module, "__path__", None) or [])
    return any(p and os.path.realpath(p).startswith(real) for p in places)

def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def top_level(dist):
    # top_level.txt where the wheel has one; else the packages and modules RECORD lists.
    names = (dist.read_text("top_level.txt") or "").split()
    if not names:
        for path in dist.files or ():
            parts = path.parts
            if len(parts) == 1 and path.suffix in (".py", ".so", ".pyd"):
                names.append(parts[0].split(".")[0])
            elif len(parts) > 1 and path.suffix in (".py", ".so", ".pyd"):
                names.append(parts[0])
    names = sorted({n.replace("/", ".") for n in names if n.replace("/", "").isidentifier()})
    public = [n for n in names if not n.startswith("_")]
    return public or names

for name in modules:
    print("smoke: import " + name, flush=True)
    module = importlib.import_module(name)
    if not inside(module):
        where = getattr(module, "__file__", None) or list(getattr(module, "__path__", []))
        raise SystemExit("smoke: %s was imported from %s, not from the env" % (name, where))
if distributions:
    installed = {}
    for dist in metadata.distributions(path=[target]):
        installed.setdefault(normalize(dist.metadata["Name"] or ""), dist)
    for wanted in distributions:
        dist = installed.get(normalize(wanted))
        if dist is None:
            print("smoke: %s is not installed here (a marker leaves it out)" % wanted, flush=True)
            continue
        for name in top_level(dist):
            print("smoke: import %s from %s" % (name, wanted), flush=True)
            try:
                importlib.import_module(name)
            except BaseException as exc:
                last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                last = last.replace("\n", " ")
                print("smoke-failed\t%s\t%s\t%s" % (wanted, name, last), flush=True)
                raise SystemExit(3)
if "torchvision" in sys.modules:
    # A torchvision built for another torch imports fine and fails at its first operator.
    print("smoke: run torchvision.ops.nms on CPU", flush=True)
    import torch, torchvision
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
    kept = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist()
    if kept != [0]:
        raise SystemExit("smoke: torchvision.ops.nms kept %r of two boxes, not [0]" % kept)
if cuda:
    print("smoke: import torch (CUDA)", flush=True)
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("smoke: torch.cuda.is_available() is False on a GPU worker")
    value = (torch.ones(64, device="cuda") * 2).sum().item()
    if value != 128:
        raise SystemExit("smoke: a CUDA op returned %r, expected 128" % value)
    if "flash_attn" in modules:
        print("smoke: import flash_attn_2_cuda", flush=True)
        import flash_attn_2_cuda  # the CUDA extension; a wheel without it imports silently
hot = os.environ.get("RUNPOD_SLIM_HOT_PAGES")
if hot:
    # Which pages of the env's large files these imports touched: a packed env's hydration
    # reads them ahead in a few large reads instead of one round trip per page fault.
    page = os.sysconf("SC_PAGE_SIZE")
    ranges = {}
    try:
        with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) < 6 or not fields[5].strip().startswith(real):
                    continue
                path = fields[5].strip()
                if os.path.getsize(path) < 1 << 20:
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                offset = int(fields[2], 16)
                pagemap.seek(start // page * 8)
                entries = pagemap.read((end - start) // page * 8)
                rel = os.path.relpath(path, real)
                for i in range(len(entries) // 8):
                    if entries[i * 8 + 7] & 0x80:  # bit 63: present
                        ranges.setdefault(rel, []).append(offset + i * page)
    except OSError:
        ranges = {}
    # Holes of up to 16 KiB are read with their neighbours. (256 KiB, before, added 50 MB to
    # the 219 MB an audio env's imports map, all read through the volume at every start.)
    merged = {}
    for rel, offsets in ranges.items():
        spans = []
        for at in sorted(set(offsets)):
            if spans and at - (spans[-1][0] + spans[-1][1]) <= 16 << 10:
                spans[-1][1] = at + page - spans[-1][0]
            else:
                spans.append([at, page])
        merged[rel] = spans
    # And which module files they loaded: a packed env hydrates those (with everything that is
    # not Python source) before the worker imports, and the rest of its source meanwhile.
    def inside_site(paths):
        inside = set()
        for path in paths:
            path = os.path.realpath(path)
            if path.startswith(real) and os.path.isfile(path):
                inside.add(os.path.relpath(path, real))
        return sorted(inside)

    for module in list(sys.modules.values()):
        for path in (getattr(module, "__file__", None), getattr(module, "__cached__", None)):
            if isinstance(path, str):
                found.add(path)
    with open(hot, "w") as out:
        json.dump(
            {"pages": merged, "modules": inside_site(found), "opened": inside_site(opened)}, out
        )
print("smoke: ok", flush=True)
"""
_FAILED = "smoke-failed\t"
TOUCHED = "smoke-touched.json"  # beside a packed env's site on container disk


@dataclass(frozen=True)
class Touched:
    """What the smoke test's imports used of the env (empty when it could not tell)."""

    pages: dict[str, list[list[int]]]  # large file -> [offset, length] ranges
    modules: frozenset[str]  # the module files (.py, .pyc, .so) they loaded, relative to site
    opened: frozenset[str] = frozenset()  # the files Python opened for them, as well


def read_touched(path: Path) -> Touched:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        return Touched({}, frozenset())
    pages = data.get("pages")

    def paths(key: str) -> frozenset[str]:
        found = data.get(key)
        if not isinstance(found, list):
            return frozenset()
        return frozenset(p for p in found if isinstance(p, str))

    return Touched(pages if isinstance(pages, dict) else {}, paths("modules"), paths("opened"))


class RequirementImportError(SmokeTestError):
    """One of a custom handler's own requirements fails to import; nothing was published."""

    def __init__(self, distribution: str, module: str, error: str, requirements: str) -> None:
        self.package = distribution
        self.module = module
        self.stderr_tail = error
        BootstrapError.__init__(
            self,
            f"your requirement {distribution} does not import (import {module}: {error}); "
            f"the env was not published. Fix it in {requirements}: pin a version that imports "
            f"here, add what it needs, or remove it",
        )


def smoke_test(
    plan: InstallPlan,
    site: Path,
    *,
    runner: Runner,
    log: Callable[[str], None],
    python: str = sys.executable,
    environ: Mapping[str, str] = os.environ,
    touched: Path | None = None,
) -> None:
    """Import what was installed, in a fresh interpreter, from the env and nowhere else.

    With `touched`, the child also writes there which pages of the env's large files its
    imports touched and which module files they loaded (read_touched; bootstrap/packed.py
    hydrates those first).
    """
    argv = [
        python,
        "-s",
        "-c",
        _SMOKE,
        str(site),
        "1" if plan.cuda_smoke else "0",
        *plan.smoke_imports,
        *(("--", *plan.smoke_distributions) if plan.smoke_distributions else ()),
    ]
    # PYTHONDONTWRITEBYTECODE is dropped on purpose: the smoke imports leave .pyc files for
    # exactly the modules a worker imports, so no start after this one compiles them again.
    dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in environ.items() if k not in dropped}
    if touched is not None:
        env["RUNPOD_SLIM_HOT_PAGES"] = str(touched)
    said: list[str] = []
    code, tail = runner(argv, env, site.parent, said.append)
    if code != 0:
        failed = [line for line in said or tail if line.startswith(_FAILED)]
        if failed:
            distribution, module, error = failed[-1][len(_FAILED) :].split("\t", 2)
            raise RequirementImportError(
                distribution, module, _without_site(error, site), plan.lock.path.name
            )
        started = [
            line.split(" ", 2)[2]
            for line in tail
            if line.startswith(("smoke: import ", "smoke: run "))
        ]
        raise SmokeTestError(started[-1] if started else "python", "\n".join(tail[-15:]))
    theirs = [
        "{} ({})".format(*line[len("smoke: import ") :].split(" from ", 1))
        for line in said
        if line.startswith("smoke: import ") and " from " in line
    ]
    log(
        f"smoke: imported {', '.join(plan.smoke_imports)}"
        + (f"; your requirements' modules {', '.join(theirs)}" if theirs else "")
        + (", ran torchvision.ops.nms" if "smoke: run torchvision.ops.nms on CPU" in said else "")
        + (" and ran a CUDA op" if plan.cuda_smoke else "")
    )


def _without_site(text: str, site: Path) -> str:
    """An error line without the staging path it may name (it is gone once the start fails)."""
    for path in {str(site), os.path.realpath(site)}:
        text = text.replace(path + os.sep, "").replace(path, "the env")
    return text[:500]
