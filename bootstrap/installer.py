"""Install a plan with uv (or pip): the requirements file, the command line, retries, the deadline.

pip runs isolated from the machine's pip configuration and PIP_* variables: the settings are the
one place that chooses an index. The installer's other parts live beside this module and are
re-exported here for the callers that import them from it: bootstrap/runner.py runs a command
(streamed, killed on time), bootstrap/tools.py provisions uv (or finds pip), and
bootstrap/smoke.py imports what was installed.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .cache import Layout
from .deadline import Deadline
from .errors import InstallError, InstallTimeoutError, from_os_error
from .fetch import redact_url
from .plan import InstallPlan
from .runner import Runner, redact_line, run_streaming
from .settings import Settings
from .smoke import RequirementImportError, smoke_test
from .tools import (
    LEFTOVER_AGE_S,
    UV_VERSION,
    UV_WHEELS,
    Tool,
    find_tool,
    provision_uv,
    sweep_tool_leftovers,
)

__all__ = [
    "LEFTOVER_AGE_S",
    "PIP_REQUIREMENTS",
    "UV_VERSION",
    "UV_WHEELS",
    "RequirementImportError",
    "Runner",
    "Tool",
    "find_tool",
    "install_command",
    "install_indexes",
    "installed_distributions",
    "provision_uv",
    "redact_line",
    "requirements_file",
    "run_install",
    "run_streaming",
    "smoke_test",
    "sweep_tool_leftovers",
    "tool_environ",
]

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
# Options whose value is an index (uv's and pip's spellings), named when an install stalls.
_INDEX_OPTIONS = ("--index-url", "--index", "--default-index", "--extra-index-url")


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
