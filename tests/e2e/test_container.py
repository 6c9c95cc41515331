"""The worker's image, built by build-runpod-slim.sh and started by a real dockerd.

The module's fixture starts dockerd (scripts/start-dockerd.sh), imports a stand-in base image
(scripts/make-base-image.sh: these machines cannot pull ubuntu:22.04 from a registry) and
builds the slim image on it (tests/support/docker.py). Then containers run real storage jobs
through the image's entrypoint, with a host directory as the network volume: the first installs
the handler's stack into the volume (cold), the next finds it there (warm), and two started at
once on an empty volume install it once.

Where the scripts cannot have a daemon or the base image (they need root for apt-get, dockerd
and debootstrap, unless both are there already), the tests are skipped, or fail under CI=true.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench._common import report
from tests.support.docker import BASE, CA_BUNDLE, build

IMAGE = "runpod-slim:test"
BUDGET_MB = 55.0
RUN_TIMEOUT_S = 600  # a cold start downloads the storage stack (about 100 packages)


def _docker_version() -> str:
    return subprocess.run(
        ["docker", "version", "-f", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def image_size(name: str) -> int:
    """The image's size in bytes, as `docker image inspect` reports it."""
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out)


@pytest.fixture(scope="module")
def image() -> str:
    """The slim image, freshly built on the stand-in base by build-runpod-slim.sh."""
    return build(IMAGE)


@dataclass(frozen=True)
class Run:
    """One finished `docker run`: its exit status, its output (both streams) and wall time."""

    returncode: int
    log: str
    seconds: float


def _copy_job(name: str, data: bytes) -> str:
    job = {
        "input": {
            "action": "copy",
            "source_base64": base64.b64encode(data).decode(),
            "destination": f"volume://{name}",
        }
    }
    return json.dumps(job)


def _docker_run(container: str, volume: Path, job: str) -> list[str]:
    mounts = ["-v", f"{volume}:/runpod-volume"]
    if CA_BUNDLE.is_file():
        mounts += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    return [
        "docker",
        "run",
        "--rm",
        "--name",
        container,
        "--network",
        "host",
        *mounts,
        "-e",
        "HANDLER_TYPE=storage",
        IMAGE,
        "--test_input",
        job,
    ]


def _remove(container: str) -> None:
    subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    """An empty host directory to mount as the network volume, removed after the test.

    Each test installs the storage env (135 MB in about 7,000 files) into its volume: removing
    it keeps pytest's kept temporary directories small.
    """
    path = tmp_path / "volume"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names for this test's containers; any still there afterwards is removed."""
    names: list[str] = []
    yield names
    for name in names:
        _remove(name)


def start_worker(
    containers: list[str], volume: Path, job: str
) -> tuple[subprocess.Popen[str], float]:
    """Start one container on the volume; returns it and its start time."""
    name = f"runpod-slim-e2e-{uuid.uuid4().hex[:12]}"
    containers.append(name)
    began = time.perf_counter()
    proc = subprocess.Popen(
        _docker_run(name, volume, job),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, began


def finish(proc: subprocess.Popen[str], began: float, deadline: float) -> Run:
    """Wait for the container until the deadline; kill the client past it, then fail."""
    try:
        out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"docker run took over {RUN_TIMEOUT_S} s:\n{out[-4000:]}")
    return Run(proc.returncode, out, time.perf_counter() - began)


def run_worker(containers: list[str], volume: Path, job: str) -> Run:
    proc, began = start_worker(containers, volume, job)
    return finish(proc, began, time.monotonic() + RUN_TIMEOUT_S)


def assert_served(run: Run) -> None:
    assert run.returncode == 0, run.log[-5000:]
    assert "Job local_test completed successfully." in run.log, run.log[-5000:]


def test_the_image_adds_at_most_55_mb_to_its_base(image: str) -> None:
    base, built = image_size(BASE), image_size(image)
    added_mb = (built - base) / 1e6
    print(f"{BASE}: {base / 1e6:.1f} MB; {image}: {built / 1e6:.1f} MB; adds {added_mb:.1f} MB")
    assert added_mb <= BUDGET_MB


def test_cold_then_warm_start_on_a_volume(image: str, volume: Path, containers: list[str]) -> None:
    data = b"hello from the container\n"

    cold = run_worker(containers, volume, _copy_job("hello.txt", data))
    assert_served(cold)
    assert "state=installing" in cold.log and "download and install:" in cold.log
    assert (volume / "hello.txt").read_bytes() == data

    (volume / "hello.txt").unlink()
    warm = run_worker(containers, volume, _copy_job("hello.txt", data))
    assert_served(warm)
    assert "lookup: warm" in warm.log, warm.log[-5000:]
    assert "download and install" not in warm.log
    assert (volume / "hello.txt").read_bytes() == data

    print(f"docker run to job done: cold {cold.seconds:.1f} s, warm {warm.seconds:.1f} s")
    base, built = image_size(BASE), image_size(image)
    report(
        "container_start",
        {
            "what": "wall time of `docker run ... --test_input` (storage copy job to the "
            "volume) from start to exit: cold installs the storage env into the volume",
            "dockerd": _docker_version(),
            "image": image,
            "base": BASE,
            "image_mb": round(built / 1e6, 1),
            "base_mb": round(base / 1e6, 1),
            "added_mb": round((built - base) / 1e6, 1),
            "cold_s": round(cold.seconds, 2),
            "warm_s": round(warm.seconds, 2),
        },
    )


def test_two_containers_on_an_empty_volume_install_once(
    image: str, volume: Path, containers: list[str]
) -> None:
    payloads = {"a.txt": b"first worker\n", "b.txt": b"second worker\n"}
    started = [
        start_worker(containers, volume, _copy_job(name, data)) for name, data in payloads.items()
    ]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        runs = [finish(proc, began, deadline) for proc, began in started]
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    for run in runs:
        assert_served(run)
    installs = [run for run in runs if "download and install:" in run.log]
    assert len(installs) == 1, f"{len(installs)} containers installed"
    for name, data in payloads.items():
        assert (volume / name).read_bytes() == data
    envs = sorted(p.name for p in (volume / ".runpod-slim" / "envs").iterdir())
    assert len(envs) == 1, envs


def test_the_image_ships_the_worker_and_not_its_test_tooling(image: str) -> None:
    find = ["find", "/app", "-name", "*.py", "-not", "-path", "*/__pycache__/*"]
    listing = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", *find[:1], image, *find[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert "/app/handler.py" in listing and "/app/handlers/storage/handler.py" in listing
    assert "/app/bootstrap/catalog.py" in listing
    assert "/app/handlers/harness.py" not in listing  # dev tooling: the tests' local API client
    assert not [path for path in listing if "/tests/" in path or "/bench/" in path]


def test_the_image_reads_and_writes_zstd_archives(image: str) -> None:
    """Packed envs' archives are zstd through the system's libzstd (bootstrap/zstd.py)."""
    code = (
        "from bootstrap import zstd; data = b'import torch\\n' * 100000; "
        "assert zstd.available(); "
        "assert b''.join(zstd.decompress(zstd.compress(iter([data])))) == data; print('zstd ok')"
    )
    argv = ["docker", "run", "--rm", "--network", "none", "--workdir", "/app"]
    run = subprocess.run(
        [*argv, "--entrypoint", "python3", image, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0 and run.stdout.strip() == "zstd ok", run.stderr[-2000:]


def test_the_image_serves_the_sdks_local_api_without_the_harness(
    image: str, volume: Path, containers: list[str]
) -> None:
    """--rp_serve_api is the RunPod SDK's own server: handler.py passes it on, nothing more."""
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    name = f"runpod-slim-e2e-{uuid.uuid4().hex[:12]}"
    containers.append(name)
    argv = _docker_run(name, volume, "{}")
    argv[-2:] = ["--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    job = json.loads(_copy_job("served.txt", b"served by the local API\n"))
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/runsync",
        data=json.dumps(job).encode(),
        headers={"Content-Type": "application/json"},
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while True:  # the server answers once the cold install is done
            assert proc.poll() is None, "the container ended before its server answered"
            assert time.monotonic() < deadline, "the local API did not answer in time"
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    answer = json.loads(response.read())
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)  # polling a server that is not up yet, with a deadline
    finally:
        _remove(name)
        out, _ = proc.communicate(timeout=60)
    assert answer["status"] == "COMPLETED", out[-4000:]
    assert answer["output"]["bytes"] == len(b"served by the local API\n")
    assert (volume / "served.txt").read_bytes() == b"served by the local API\n"
