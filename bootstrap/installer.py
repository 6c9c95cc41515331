"""Provision the package installer, run it on a plan, and smoke-test the result.

uv is found on PATH, else in the cache, else its wheel is fetched from the package index and
checked against the sha256 pinned here; pip is the fallback. Every command goes through a
`Runner`, so tests can watch the exact command lines, and its output reaches the log line by
line (uv's "Downloading torch (825.1MiB)" lines are the download progress).
"""

from __future__ import annotations

import collections
import os
import platform
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .cache import Layout
from .errors import BootstrapError, InstallError, SmokeTestError
from .fetch import download, index_file_url
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


class Runner(Protocol):
    """Runs a command, feeding each output line to on_line; returns (exit code, last lines)."""

    def __call__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None,
        on_line: Callable[[str], None],
    ) -> tuple[int, list[str]]: ...


def run_streaming(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path | None, on_line: Callable[[str], None]
) -> tuple[int, list[str]]:
    """The real Runner: stdout and stderr merged, streamed line by line."""
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
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if line:
                tail.append(line)
                on_line(line)
        code = proc.wait()
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
) -> Tool:
    """uv from PATH, the cache, the image's wheelhouse or the index; else pip."""
    if settings.installer in ("auto", "uv"):
        found = which("uv")
        if found:
            return Tool("uv", (found,))
        try:
            return Tool("uv", (str(provision_uv(settings, layout, log=log, machine=machine)),))
        except BootstrapError as exc:
            if settings.installer == "uv":
                raise
            log(f"installer: uv unavailable ({exc}); falling back to pip")
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
    if probe.returncode != 0:
        raise InstallError(
            f"{python} -m pip",
            1,
            "",
            "neither uv nor pip is available: put uv on PATH, or "
            "let the bootstrap fetch it (RUNPOD_SLIM_INSTALLER=auto, network to the index)",
        )
    return Tool("pip", (python, "-m", "pip"))


def provision_uv(
    settings: Settings, layout: Layout, *, log: Callable[[str], None], machine: str | None = None
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
    if not wheel.is_file():
        if settings.offline:
            raise BootstrapError("uv is not in the cache and RUNPOD_SLIM_OFFLINE is set")
        url = index_file_url(settings.index_url, "uv", filename, ca_bundle=settings.ca_bundle)
        log(f"installer: fetching uv {UV_VERSION} from the index")
        wheel = download(
            url,
            layout.wheels / sha256[:16] / filename,
            sha256,
            ca_bundle=settings.ca_bundle,
            retries=settings.retries,
            log=log,
        )
    staging = binary.parent.with_name(f".{binary.parent.name}.{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
        (staging / "uv").write_bytes(archive.read(member))
    (staging / "uv").chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        os.rename(staging, binary.parent)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process unpacked it first
    return binary


def requirements_file(plan: InstallPlan, staging: Path, flash_attn_wheel: Path | None) -> Path:
    """The lock, plus the flash-attn wheel pinned by path and hash."""
    text = plan.lock.text
    if plan.flash_attn and flash_attn_wheel:
        text += (
            f"\nflash-attn @ {flash_attn_wheel.resolve().as_uri()} "
            f"--hash=sha256:{plan.flash_attn.sha256}\n"
        )
    path = staging / "requirements.txt"
    path.write_text(text)
    return path


def install_command(
    tool: Tool, plan: InstallPlan, site: Path, requirements: Path, settings: Settings, python: str
) -> list[str]:
    """The one install command for this plan."""
    links = [arg for link in settings.find_links for arg in ("--find-links", link)]
    binary = ["--only-binary", ":all:"] if plan.binary_only else []
    hashed = ["--require-hashes", "--no-deps"] if plan.lock.hashed else []
    if tool.kind == "pip":
        extra = ["--extra-index-url", plan.torch_index] if plan.torch_index else []
        return [
            *tool.argv,
            "install",
            "--target",
            str(site),
            "--no-input",
            "--disable-pip-version-check",
            *binary,
            "--index-url",
            settings.index_url,
            "-r",
            str(requirements),
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


def tool_environ(base: Mapping[str, str], settings: Settings, layout: Layout) -> dict[str, str]:
    env = dict(base)
    env["UV_CACHE_DIR"] = str(layout.uv_cache)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.setdefault("UV_HTTP_TIMEOUT", "60")
    # uv trusts only its built-in roots unless told: the system's store is where an image (or
    # a TLS-inspecting proxy's operator) adds a CA, and where Python's own downloads look.
    env.setdefault("UV_SYSTEM_CERTS", "1")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if settings.ca_bundle:
        env["SSL_CERT_FILE"] = settings.ca_bundle
        env["PIP_CERT"] = settings.ca_bundle
    if settings.offline:
        env["UV_OFFLINE"] = "1"
        env["PIP_NO_INDEX"] = "1"
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
) -> None:
    """Run the install command, retrying with backoff when its output says the network failed."""
    attempt = 0
    while True:
        code, tail = runner(argv, env, cwd, lambda line: log(f"install: {line}"))
        if code == 0:
            return
        network = any(sign in line.lower() for line in tail for sign in _NETWORK_SIGNS)
        attempt += 1
        if not network or attempt > retries:
            hint = (
                f"the package index could not be reached (after {attempt} attempts); check "
                f"RUNPOD_SLIM_INDEX_URL and the network, or start from a warm cache"
                if network
                else "see the installer's output below"
            )
            raise InstallError(" ".join(argv[:3]), code, "\n".join(tail[-15:]), hint)
        delay = min(2.0**attempt, 30.0)
        log(f"install: network error, retrying in {delay:.0f} s ({attempt}/{retries})")
        sleep(delay)


_SMOKE = r"""
import importlib, os, site, sys
target, cuda, modules = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
site.addsitedir(target)
sys.path.remove(target)
sys.path.insert(0, target)
real = os.path.realpath(target) + os.sep
for name in modules:
    print("smoke: import " + name, flush=True)
    module = importlib.import_module(name)
    where = os.path.realpath(getattr(module, "__file__", None) or "")
    if not where.startswith(real):
        raise SystemExit("smoke: %s was imported from %s, not from the env" % (name, where))
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
print("smoke: ok", flush=True)
"""


def smoke_test(
    plan: InstallPlan,
    site: Path,
    *,
    runner: Runner,
    log: Callable[[str], None],
    python: str = sys.executable,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Import what was installed, in a fresh interpreter, from the env and nowhere else."""
    argv = [
        python,
        "-s",
        "-c",
        _SMOKE,
        str(site),
        "1" if plan.cuda_smoke else "0",
        *plan.smoke_imports,
    ]
    # PYTHONDONTWRITEBYTECODE is dropped on purpose: the smoke imports leave .pyc files for
    # exactly the modules a worker imports, so no start after this one compiles them again.
    dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in environ.items() if k not in dropped}
    code, tail = runner(argv, env, site.parent, lambda line: None)
    if code != 0:
        started = [
            line.split("import ", 1)[1] for line in tail if line.startswith("smoke: import ")
        ]
        raise SmokeTestError(started[-1] if started else "python", "\n".join(tail[-15:]))
    log(
        f"smoke: imported {', '.join(plan.smoke_imports)}"
        + (" and ran a CUDA op" if plan.cuda_smoke else "")
    )
