"""A Docker daemon, the stand-in base image and image builds, for the tests in tests/e2e.

scripts/start-dockerd.sh starts a daemon unless one answers; scripts/make-base-image.sh
imports a Debian bookworm base (these machines cannot pull ubuntu:22.04 from a registry).
Both are idempotent, so each test module may ask for them; they run once per session here.
Where they cannot run (they need root unless both are there already), the tests are skipped,
or fail under CI=true.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASE = "runpod-slim-test-base:bookworm"
# TLS to the package index goes through a local CA on the test machines (FACTS.md, "Containers
# here"): the host's bundle is what a build or a container needs to reach the index.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SETUP_TIMEOUT_S = 900  # apt-get install docker.io, debootstrap
BUILD_TIMEOUT_S = 1200
_ready: list[str] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> None:
    """No Docker here: a skip on a developer's machine, a failure in CI, which runs everything."""
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def run_script(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """A script of the repository, its two streams as one text."""
    return subprocess.run(
        argv,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def docker_and_base() -> str:
    """A daemon that answers and the stand-in base image; its name."""
    if not _ready:
        for script in ("scripts/start-dockerd.sh", "scripts/make-base-image.sh"):
            proc = run_script(["bash", script], SETUP_TIMEOUT_S)
            if proc.returncode != 0:
                unavailable(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
        _ready.append(BASE)
    return BASE


def image_id(name: str) -> str | None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def build(tag: str, *options: str) -> str:
    """build-runpod-slim.sh on the stand-in base, --network host; the last run's image goes.

    Layers are cached by the daemon: the slim tier's layers serve the baked tier's build too.
    """
    base = docker_and_base()
    previous = image_id(tag)
    argv = ["bash", "build-runpod-slim.sh", "--base", base, "--tag", tag, "--network", "host"]
    proc = run_script([*argv, *options], BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"build-runpod-slim.sh failed:\n{proc.stdout[-5000:]}", pytrace=False)
    print(proc.stdout.strip().splitlines()[-1])
    if previous and previous != image_id(tag):
        # The last run's image, now untagged: remove it rather than leave it dangling.
        subprocess.run(["docker", "image", "rm", previous], capture_output=True, check=False)
    return tag
