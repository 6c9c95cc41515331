"""Provision the package installer, run it on a plan, and smoke-test the result.

uv is found on PATH, else in the cache, else its wheel is fetched from the package index and
checked against the sha256 pinned here; pip is the fallback. Every command goes through a
`Runner`, so tests can watch the exact command lines, and its output reaches the log line by
line (uv's "Downloading torch (825.1MiB)" lines are the download progress).

Installers run in their own process group, die with the bootstrap (a parent-death signal),
and are killed, group and all, at the install's deadline. pip runs isolated from the machine's
pip configuration and PIP_* variables: the settings are the one place that chooses an index.
"""

from __future__ import annotations

import collections
import contextlib
import os
import platform
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .cache import Layout
from .deadline import Deadline
from .errors import (
    BootstrapError,
    InstallError,
    InstallTimeoutError,
    SmokeTestError,
    from_os_error,
)
from .fetch import download, index_file_url, redact_url, sha256_of
from .plan import InstallPlan
from .settings import Settings

UV_VERSION = "0.13.9"
UV_WHEELS = {
    "x86_64": (
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    ),
    "aarch64": (
        "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
        "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    ),
}
# Lines of installer output that mean the network failed, so a retry may help.
_NETWORK_SIGNS = (
    "error sending request",
    "failed to fetch",
    "connection refused",
    "connection reset",
    "connection closed",
    "timed out",
    "dns error",
    "network is unreachable",
    "tcp connect error",
    "temporary failure in name resolution",
    "max retries exceeded",
    "newconnectionerror",
    "readtimeouterror",
)
_TAIL_LINES = 40
# Options whose value is an index (uv's and pip's spellings), named when an install stalls.
_INDEX_OPTIONS = ("--index-url", "--index", "--default-index", "--extra-index-url")
# user:password@ in a URL an installer prints; never logged or put in an error.
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s:]+(?::[^/@\s]*)?@")
_PR_SET_PDEATHSIG = 1
# How Python's ssl, uv (rustls) and pip say that a server's certificate is not trusted.
_CERTIFICATE = re.compile(
    r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|invalid peer certificate|UnknownIssuer"
    r"|self[- ]signed certificate",
    re.IGNORECASE,
)
# A leftover of provisioning (a half-unpacked uv, a partial download) untouched for this long
# belongs to a dead start: unpacking takes seconds, and a live download writes (so touches its
# file) all the time and stops at the install deadline.
LEFTOVER_AGE_S = 900.0


class Runner(Protocol):
    """Runs a command, feeding each output line to on_line; returns (exit code, last lines).

    With timeout_s, the command (and everything it started) is killed after that long.
    """

    def __call__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None,
        on_line: Callable[[str], None],
        timeout_s: float | None = None,
    ) -> tuple[int, list[str]]: ...


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGKILL the child when the bootstrap dies (Linux)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]  # resolved here, not in the forked child

    def set_pdeathsig() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return set_pdeathsig


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def redact_line(line: str) -> str:
    """An installer's output line without credentials in any URL it names."""
    return _CREDENTIALS.sub("***@", line)


def run_streaming(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | None,
    on_line: Callable[[str], None],
    timeout_s: float | None = None,
) -> tuple[int, list[str]]:
    """The real Runner: stdout and stderr merged, streamed line by line.

    The child leads its own process group, so that a kill at the deadline, or when the
    bootstrap is stopped, takes whatever it started too; and it is sent SIGKILL by the kernel
    if the bootstrap dies first, so an orphaned uv never keeps writing into the cache.
    """
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=_parent_death_signal(),  # noqa: PLW1509 (no locks taken in the child)
    ) as proc:
        timer = None
        if timeout_s is not None:
            timer = threading.Timer(timeout_s, _kill_group, (proc,))
            timer.daemon = True
            timer.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = redact_line(raw.rstrip())
                if line:
                    tail.append(line)
                    on_line(line)
            code = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:  # the bootstrap is being stopped: take the group with it
                _kill_group(proc)
                proc.wait()
    return code, list(tail)


@dataclass(frozen=True)
class Tool:
    """The installer this start uses."""

    kind: str  # "uv" or "pip"
    argv: tuple[str, ...]  # how to invoke it, up to and excluding "pip install"

    def describe(self) -> str:
        return f"{self.kind} ({' '.join(self.argv)})"


def find_tool(
    settings: Settings,
    layout: Layout,
    *,
    log: Callable[[str], None],
    which: Callable[[str], str | None] = shutil.which,
    python: str = sys.executable,
    machine: str | None = None,
    deadline: Deadline | None = None,
) -> Tool:
    """uv from PATH, the cache, the image's wheelhouse or the index; else pip."""
    sweep_tool_leftovers(
        layout, older_than_s=max(LEFTOVER_AGE_S, settings.install_timeout_s + 60), log=log
    )
    uv_failure: BootstrapError | None = None
    if settings.installer in ("auto", "uv"):
        found = which("uv")
        if found:
            return Tool("uv", (found,))
        try:
            uv = provision_uv(settings, layout, log=log, machine=machine, deadline=deadline)
            return Tool("uv", (str(uv),))
        except BootstrapError as exc:
            if settings.installer == "uv":
                raise
            uv_failure = exc
            log(f"installer: uv unavailable ({exc}); falling back to pip")
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
    if probe.returncode != 0:
        if uv_failure is not None and _CERTIFICATE.search(str(uv_failure)):
            # What went wrong is the certificate, not the tools: say so, and how to fix it.
            raise BootstrapError(
                f"{uv_failure}; the index's TLS certificate is not trusted here (a proxy that "
                "intercepts TLS?): point SSL_CERT_FILE at a CA bundle that holds its CA (an "
                "image build: build-runpod-slim.sh --ca-cert FILE), and pip is not available"
            )
        raise InstallError(
            f"{python} -m pip",
            1,
            "",
            "neither uv nor pip is available: put uv on PATH, or "
            "let the bootstrap fetch it (RUNPOD_SLIM_INSTALLER=auto, network to the index)"
            + (f"; fetching uv failed: {uv_failure}" if uv_failure else ""),
        )
    return Tool("pip", (python, "-m", "pip"))


def provision_uv(
    settings: Settings,
    layout: Layout,
    *,
    log: Callable[[str], None],
    machine: str | None = None,
    deadline: Deadline | None = None,
) -> Path:
    """The pinned uv binary, from the cache, else unpacked from its hash-checked wheel."""
    arch = machine or platform.machine()
    if arch not in UV_WHEELS:
        raise BootstrapError(f"no pinned uv wheel for {arch}; put uv on PATH")
    binary = layout.tools / f"uv-{UV_VERSION}-{arch}" / "uv"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    filename, sha256 = UV_WHEELS[arch]
    wheel = settings.wheelhouse / filename
    if not (wheel.is_file() and sha256_of(wheel) == sha256):  # only the pinned bytes become uv
        if wheel.is_file():
            log(f"installer: {wheel} is not the pinned uv wheel (sha256 differs); not used")
        if settings.offline:
            raise BootstrapError("uv is not in the cache and RUNPOD_SLIM_OFFLINE is set")
        url = index_file_url(
            settings.index_url, "uv", filename, ca_bundle=settings.ca_bundle, deadline=deadline
        )
        log(f"installer: fetching uv {UV_VERSION} from the index")
        wheel = download(
            url,
            layout.wheels / sha256[:16] / filename,
            sha256,
            ca_bundle=settings.ca_bundle,
            retries=settings.retries,
            log=log,
            deadline=deadline,
        )
    # A token, not the pid: every containerised worker is pid 1, and several may unpack at once.
    staging = binary.parent.with_name(f".{binary.parent.name}.{os.urandom(6).hex()}")
    try:
        staging.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
            with archive.open(member) as source, (staging / "uv").open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        mode = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
        (staging / "uv").chmod(mode)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise from_os_error(exc, f"unpacking uv {UV_VERSION}", staging) from None
    try:
        os.rename(staging, binary.parent)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if not binary.is_file():  # else another process unpacked it first, which is as good
            raise from_os_error(exc, f"unpacking uv {UV_VERSION}", binary.parent) from None
    return binary


def sweep_tool_leftovers(
    layout: Layout,
    *,
    older_than_s: float = LEFTOVER_AGE_S,
    log: Callable[[str], None],
    clock: Callable[[], float] = time.time,
) -> list[Path]:
    """Remove what killed provisioning left: half-unpacked tools, partial downloads.

    tools/ and wheels/ are shared by every env key, so holding one key's lock does not make
    them ours: only leftovers untouched for `older_than_s` go, never a live start's.
    """
    candidates = [
        *(layout.tools.glob(".*") if layout.tools.is_dir() else ()),
        *(layout.wheels.glob("*/.*.part") if layout.wheels.is_dir() else ()),
    ]
    removed = []
    for path in candidates:
        try:
            stamps = [path.lstat().st_mtime]
            if path.is_dir():
                stamps += [inner.lstat().st_mtime for inner in path.rglob("*")]
        except OSError:
            continue  # gone already
        if clock() - max(stamps) < older_than_s:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log(f"installer: removed {len(removed)} leftovers of killed starts from {layout.root}")
    return removed


def requirements_file(plan: InstallPlan, staging: Path, flash_attn_wheel: Path | None) -> Path:
    """The lock, plus the flash-attn wheel pinned by path and hash."""
    text = plan.lock.text
    if plan.flash_attn and flash_attn_wheel:
        text += (
            f"\nflash-attn @ {flash_attn_wheel.resolve().as_uri()} "
            f"--hash=sha256:{plan.flash_attn.sha256}\n"
        )
    path = staging / "requirements.txt"
    try:
        path.write_text(text)
        if _mixed_hashes(plan):
            (staging / PIP_REQUIREMENTS).write_text(re.sub(r"[ \t]*--hash=\S+", "", text))
    except OSError as exc:
        raise from_os_error(exc, "writing the install's requirements", path) from None
    return path


# pip checks every requirement's hash as soon as one has a hash; a resolved custom env has
# hashes on the GPU stack's lines (and flash-attn's) only, so pip gets them without (uv checks
# the ones that are there). The flash-attn wheel was checked by its download.
PIP_REQUIREMENTS = "requirements-pip.txt"


def _mixed_hashes(plan: InstallPlan) -> bool:
    return not plan.lock.hashed and ("--hash=" in plan.lock.text or plan.flash_attn is not None)


def install_command(
    tool: Tool, plan: InstallPlan, site: Path, requirements: Path, settings: Settings, python: str
) -> list[str]:
    """The one install command for this plan."""
    links = [arg for link in settings.find_links for arg in ("--find-links", link)]
    binary = ["--only-binary", ":all:"] if plan.binary_only else []
    hashed = ["--require-hashes", "--no-deps"] if plan.lock.hashed else []
    if tool.kind == "pip":
        extra = ["--extra-index-url", plan.torch_index] if plan.torch_index else []
        # --isolated: no PIP_* variables and no user config (tool_environ also points
        # PIP_CONFIG_FILE at /dev/null, which is how pip skips its global config too), so what
        # those would have said is given here.
        cert = ["--cert", settings.ca_bundle] if settings.ca_bundle else []
        offline = ["--no-index"] if settings.offline else []
        return [
            *tool.argv,
            "install",
            "--isolated",
            "--target",
            str(site),
            "--no-input",
            "--disable-pip-version-check",
            "--cache-dir",
            str(settings.cache_root / "pip-cache"),
            *cert,
            *offline,
            *binary,
            "--index-url",
            settings.index_url,
            "-r",
            str(requirements.with_name(PIP_REQUIREMENTS) if _mixed_hashes(plan) else requirements),
            *links,
            *hashed,
            *extra,
        ]
    if plan.torch_index is None:
        indexes = ["--index-url", settings.index_url]
    else:
        # torch's own index first; best match across both, since PyTorch's index also carries
        # common packages at other versions than the ones pinned from the package index.
        indexes = [
            "--index",
            plan.torch_index,
            "--default-index",
            settings.index_url,
            "--index-strategy",
            "unsafe-best-match",
        ]
    return [
        *tool.argv,
        "pip",
        "install",
        "--target",
        str(site),
        "--python",
        python,
        "--no-config",
        *binary,
        "-r",
        str(requirements),
        *links,
        *hashed,
        *indexes,
    ]


def installed_distributions(site: Path) -> list[str]:
    """name==version of every distribution in a site dir, from its .dist-info names."""
    found = []
    for entry in site.glob("*.dist-info"):
        name, _, version = entry.name[: -len(".dist-info")].partition("-")
        found.append(f"{name.lower().replace('_', '-')}=={version}")
    return sorted(found)


# uv variables that would choose other indexes or links than the settings do.
_UV_INDEX_VARIABLES = (
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_INDEX_STRATEGY",
    "UV_CONFIG_FILE",
)


def tool_environ(base: Mapping[str, str], settings: Settings, layout: Layout) -> dict[str, str]:
    """The installer's environment: the machine's, without its pip and uv index choices."""
    env = {
        k: v for k, v in base.items() if not k.startswith("PIP_") and k not in _UV_INDEX_VARIABLES
    }
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no config file, not even /etc/pip.conf
    env["UV_CACHE_DIR"] = str(layout.uv_cache)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.setdefault("UV_HTTP_TIMEOUT", "60")
    # uv trusts only its built-in roots unless told: the system's store is where an image (or
    # a TLS-inspecting proxy's operator) adds a CA, and where Python's own downloads look.
    env.setdefault("UV_SYSTEM_CERTS", "1")
    if settings.ca_bundle:
        env["SSL_CERT_FILE"] = settings.ca_bundle
    if settings.offline:
        env["UV_OFFLINE"] = "1"
    return env


def run_install(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    retries: int,
    runner: Runner,
    log: Callable[[str], None],
    cwd: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> None:
    """Run the install command, retrying with backoff when its output says the network failed.

    With a deadline, the command is killed when it runs out, and no retry starts after it.
    The installer's temporary files go under cwd (the staging dir), so that an install killed
    at its deadline, or with the worker, leaves none in the machine's temp dir.
    """
    if cwd is not None:
        scratch = cwd / ".tmp"
        scratch.mkdir(exist_ok=True)
        env = {**env, "TMPDIR": str(scratch)}
        try:
            _run_install(argv, env, retries, runner, log, cwd, sleep, deadline)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    _run_install(argv, env, retries, runner, log, cwd, sleep, deadline)


def _run_install(
    argv: Sequence[str],
    env: Mapping[str, str],
    retries: int,
    runner: Runner,
    log: Callable[[str], None],
    cwd: Path | None,
    sleep: Callable[[float], None],
    deadline: Deadline | None,
) -> None:
    attempt = 0
    while True:
        on_line = lambda line: log(f"install: {line}")  # noqa: E731
        if deadline is None:
            code, tail = runner(argv, env, cwd, on_line)
        else:
            code, tail = runner(argv, env, cwd, on_line, timeout_s=deadline.left())
        if code == 0:
            return
        tail = [redact_line(line) for line in tail]
        network = any(sign in line.lower() for line in tail for sign in _NETWORK_SIGNS)
        attempt += 1
        delay = min(2.0**attempt, 30.0)
        if deadline is not None and (deadline.expired() or (network and deadline.left() <= delay)):
            raise InstallTimeoutError(
                " ".join(argv[:3]),
                deadline.spent(),
                deadline.timeout_s,
                install_indexes(argv),
                "\n".join(tail[-15:]),
            )
        if not network or attempt > retries:
            hint = (
                f"the package index could not be reached (after {attempt} attempts); check "
                f"RUNPOD_SLIM_INDEX_URL and the network, or start from a warm cache"
                if network
                else "see the installer's output below"
            )
            raise InstallError(" ".join(argv[:3]), code, "\n".join(tail[-15:]), hint)
        log(f"install: network error, retrying in {delay:.0f} s ({attempt}/{retries})")
        sleep(delay)


def install_indexes(argv: Sequence[str]) -> str:
    """The indexes an install command reads, without credentials, for an error message."""
    urls = [redact_url(argv[i + 1]) for i, arg in enumerate(argv[:-1]) if arg in _INDEX_OPTIONS]
    if not urls:
        return "the package index"
    return "the package index " + " and ".join(dict.fromkeys(urls))


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
    merged = {}
    for rel, offsets in ranges.items():
        spans = []
        for at in sorted(set(offsets)):
            if spans and at - (spans[-1][0] + spans[-1][1]) <= 256 << 10:
                spans[-1][1] = at + page - spans[-1][0]
            else:
                spans.append([at, page])
        merged[rel] = spans
    with open(hot, "w") as out:
        json.dump(merged, out)
print("smoke: ok", flush=True)
"""
_FAILED = "smoke-failed\t"


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
    hot_pages: Path | None = None,
) -> None:
    """Import what was installed, in a fresh interpreter, from the env and nowhere else.

    With `hot_pages`, the child also writes there which pages of the env's large files its
    imports touched (bootstrap/packed.py reads them ahead when it hydrates the env).
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
    if hot_pages is not None:
        env["RUNPOD_SLIM_HOT_PAGES"] = str(hot_pages)
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
