"""Which installer a start uses: uv from PATH, the cache, the wheelhouse or the index; else pip.

uv's wheel is fetched from the package index only as the pinned file, checked against the sha256
pinned here, and unpacked into the cache under a fresh name that is renamed into place whole.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cache import Layout
from .deadline import Deadline
from .errors import BootstrapError, InstallError, from_os_error
from .fetch import download, index_file_url, sha256_of
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
