"""The baked tier, built by build-runpod-slim.sh and started by a real dockerd, with no network.

The module builds the storage handler's baked image once (tests/support/docker.py), giving the
build the machine's CA bundle the way a build behind a TLS-intercepting proxy gets its proxy's
CA (`--ca-cert`: TLS to the package index goes through a local CA here). Then:

- a container with `--network none` serves a job from the env baked into the image;
- the CA file is in no layer of the image, and without it the build fails naming the
  certificate problem;
- on a GPU host (a stub libnvidia-ml.so.1 the test builds with gcc: no GPU or NVIDIA driver can
  exist here, so NVML is the one fake), the image starts with no network: pynvml comes from
  the image's wheelhouse. Without the wheelhouse, the same start fails (the index is needed).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.docker import BASE, CA_BUNDLE, build, image_id, run_script, unavailable

IMAGE = "runpod-slim:test-baked-storage"
RUN_TIMEOUT_S = 120  # warm starts only: nothing is downloaded
STUB_SOURCE = Path(__file__).with_name("fake_nvml.c")
# Where the NVIDIA container toolkit puts the driver's libraries in a container.
NVML_IN_CONTAINER = "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"


@pytest.fixture(scope="module")
def baked() -> str:
    if not CA_BUNDLE.is_file():
        unavailable(f"{CA_BUNDLE} is missing: the build cannot be given this machine's CA")
    return build(IMAGE, "--tier", "baked", "--handler", "storage", "--ca-cert", str(CA_BUNDLE))


@pytest.fixture(scope="module")
def stub_nvml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libnvidia-ml.so.1 that describes one H100 (tests/e2e/fake_nvml.c), built with gcc."""
    if shutil.which("gcc") is None:
        unavailable("gcc is missing: the stub NVML library cannot be built")
    library = tmp_path_factory.mktemp("nvml") / "libnvidia-ml.so.1"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(library), STUB_SOURCE],
        check=True,
        capture_output=True,
    )
    return library


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "volume"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_job(image: str, volume: Path, data: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    """`docker run --network none` of one storage copy job onto the volume."""
    job = {
        "input": {
            "action": "copy",
            "source_base64": base64.b64encode(data).decode(),
            "destination": "volume://out.txt",
        }
    }
    return subprocess.run(
        [
            *("docker", "run", "--rm", "--network", "none"),
            *("-v", f"{volume}:/runpod-volume", *extra),
            *(image, "--test_input", json.dumps(job)),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def test_the_baked_tier_serves_a_job_with_no_network(baked: str, volume: Path) -> None:
    run = run_job(baked, volume, b"baked\n")
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "Job local_test completed successfully." in log
    assert "lookup: warm" in log and "download and install" not in log
    assert (volume / "out.txt").read_bytes() == b"baked\n"
    assert not (volume / ".runpod-slim").exists()  # the env is the image's, not the volume's


def test_the_builds_ca_is_in_no_layer_of_the_image(baked: str) -> None:
    # docker save: the image's layers as tar files inside one tar, read as a stream.
    names: list[str] = []
    with subprocess.Popen(["docker", "save", baked], stdout=subprocess.PIPE) as saved:
        assert saved.stdout is not None
        with tarfile.open(fileobj=saved.stdout, mode="r|") as image:
            for member in image:
                layer_like = member.name.endswith("layer.tar") or member.name.startswith("blobs/")
                if not (member.isfile() and layer_like):
                    continue
                try:
                    with tarfile.open(fileobj=image.extractfile(member), mode="r|") as layer:
                        names += [entry.name for entry in layer]
                except tarfile.ReadError:
                    continue  # a blob that is not a layer (a config, a manifest)
    assert saved.returncode == 0
    assert any(name.startswith("opt/runpod-slim/wheels/") for name in names)
    assert [name for name in names if "build-ca" in name or "bundle.pem" in name] == []


def test_a_baked_image_starts_on_a_gpu_host_with_no_network(
    baked: str, stub_nvml: Path, volume: Path
) -> None:
    gpu = ("-v", f"{stub_nvml}:{NVML_IN_CONTAINER}:ro")
    run = run_job(baked, volume, b"on a gpu host\n", *gpu)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "detect: 1 x NVIDIA H100 80GB HBM3, compute capability 9.0, driver 550.127.05" in log
    assert "lookup: warm" in log and "Job local_test completed successfully." in log
    assert (volume / "out.txt").read_bytes() == b"on a gpu host\n"

    # The wheelhouse is what made it: without it, pynvml must come from the index.
    run = run_job(
        baked,
        volume,
        b"x",
        *gpu,
        "-e",
        "RUNPOD_SLIM_WHEELHOUSE=/nowhere",
        "-e",
        "RUNPOD_SLIM_RETRIES=0",
    )
    log = run.stdout + run.stderr
    assert "the worker cannot start: could not fetch" in log and "nvidia-ml-py" in log, log[-3000:]


def test_a_build_without_the_proxys_ca_names_the_certificate_problem(baked: str) -> None:
    tag = "runpod-slim:test-baked-no-ca"  # never made: the build must fail
    argv = ["bash", "build-runpod-slim.sh", "--base", BASE, "--tag", tag, "--network", "host"]
    proc = run_script([*argv, "--tier", "baked", "--handler", "storage"], 600)
    if proc.returncode == 0:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)
        unavailable("the index is trusted without this machine's CA: no proxy here to test against")
    assert image_id(tag) is None
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stdout, proc.stdout[-3000:]
    assert "the index's TLS certificate is not trusted here" in proc.stdout
    assert "build-runpod-slim.sh --ca-cert FILE" in proc.stdout
    assert "neither uv nor pip is available" not in proc.stdout
