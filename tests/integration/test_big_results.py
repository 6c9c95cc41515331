"""Results of any size, against a real S3 server (Ceph radosgw) and a real volume folder.

19.5 MB is over what RunPod takes inline on either route once base64 (26 MB); 1 GB must
stream to its destination, never be read whole: each 1 GB delivery is traced
(tracemalloc) and its peak of Python memory asserted far below the file's size. Every
big file is removed after its test, on disk and in the bucket.
"""

from __future__ import annotations

import hashlib
import shutil
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from handlers.base import JobContext
from handlers.config import HandlerConfig, load_config
from tests.support.radosgw import RadosGateway

pytest_plugins = ["tests.support.s3_fixture"]

GB = 10**9
NINETEEN_AND_A_HALF = 19_500_000
# What a streamed delivery may hold in Python memory at once (measured: 14 MiB to S3, 2 MiB by
# PUT or to the volume); the whole file would be 954 MiB.
STREAMING_PEAK = 64 * 2**20
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy


def _write(path: Path, size: int) -> str:
    """`size` bytes that never repeat a 1 MiB block (each block carries its index): sha256."""
    base = hashlib.sha256(b"big results").digest() * 32768  # 1 MiB
    digest = hashlib.sha256()
    with path.open("wb") as out:
        index = 0
        while size:
            block = (index.to_bytes(8, "big") + base[8:])[: min(size, len(base))]
            out.write(block)
            digest.update(block)
            size -= len(block)
            index += 1
    return digest.hexdigest()


@pytest.fixture(scope="module")
def one_gb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A 1 GB result file, made once for this module and removed after it."""
    folder = tmp_path_factory.mktemp("one-gb")
    path = folder / "result.bin"
    digest = _write(path, GB)
    try:
        yield path, digest
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    place = tmp_path / "volume"
    place.mkdir()
    try:
        yield place
    finally:
        shutil.rmtree(place)  # 1 GB copies must not outlive the test


def _config(volume: Path, server: RadosGateway | None = None, **env: str) -> HandlerConfig:
    bucket = {}
    if server is not None:
        bucket = {
            "BUCKET_ENDPOINT_URL": server.endpoint_url,
            "BUCKET_ACCESS_KEY_ID": server.access_key,
            "BUCKET_SECRET_ACCESS_KEY": server.secret_key,
        }
    return load_config({"RUNPOD_SLIM_VOLUME": str(volume), **bucket, **env})


def _object_sha256(client: Any, bucket: str, key: str) -> tuple[int, str]:
    """The object's size and sha256, read as a stream."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    digest, size = hashlib.sha256(), 0
    for piece in iter(lambda: body.read(1 << 20), b""):
        digest.update(piece)
        size += len(piece)
    return size, digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for piece in iter(lambda: source.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def _traced(work: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """work()'s answer and the peak of Python memory it allocated."""
    tracemalloc.start()
    try:
        return work(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_19_5_mb_is_offloaded_to_the_results_bucket(
    tmp_path: Path, volume: Path, s3_server: RadosGateway, s3_client: Any, s3_bucket: str
) -> None:
    path = tmp_path / "speech.wav"
    digest = _write(path, NINETEEN_AND_A_HALF)
    config = _config(
        tmp_path / "no-volume", s3_server, RUNPOD_SLIM_RESULTS_URL=f"s3://{s3_bucket}/results"
    )
    job = JobContext("job-19", {}, tmp_path / "work", config)
    out = job.deliver(path, None)
    url = out.pop("url")
    assert out == {
        "destination": f"s3://{s3_bucket}/results/job-19/speech.wav",
        "bytes": NINETEEN_AND_A_HALF,
        "offloaded": "the result is 19.5 MB, over the 7.0 MB returned inline "
        "(RUNPOD_SLIM_INLINE_MAX_MB; RunPod takes 10 MB on /run, 20 MB on /runsync)",
    }
    with HTTP.open(url, timeout=60) as response:  # the presigned GET the caller gets
        assert hashlib.sha256(response.read()).hexdigest() == digest


def test_1_gb_streams_to_an_s3_destination(
    tmp_path: Path,
    volume: Path,
    one_gb: tuple[Path, str],
    s3_server: RadosGateway,
    s3_client: Any,
    s3_bucket: str,
) -> None:
    path, digest = one_gb
    job = JobContext("big", {}, tmp_path / "work", _config(volume, s3_server))
    out, peak = _traced(lambda: job.deliver(path, f"s3://{s3_bucket}/out/"))
    assert out.pop("url").startswith(f"{s3_server.endpoint_url}/{s3_bucket}/out/result.bin?")
    assert out == {"destination": f"s3://{s3_bucket}/out/result.bin", "bytes": GB}
    assert peak < STREAMING_PEAK, f"{peak / 2**20:.0f} MiB held at once"
    assert _object_sha256(s3_client, s3_bucket, "out/result.bin") == (GB, digest)
    s3_client.delete_object(Bucket=s3_bucket, Key="out/result.bin")


def test_1_gb_streams_to_a_presigned_put_url(
    tmp_path: Path,
    volume: Path,
    one_gb: tuple[Path, str],
    s3_client: Any,
    s3_client_factory: Callable[..., Any],
    s3_bucket: str,
) -> None:
    path, digest = one_gb
    signer = s3_client_factory(config=Config(signature_version="s3v4"))  # as tools sign today
    signed = signer.generate_presigned_url(
        "put_object", Params={"Bucket": s3_bucket, "Key": "put/result.bin"}, ExpiresIn=600
    )
    assert "X-Amz-Signature=" in signed
    config = _config(volume, RUNPOD_SLIM_ALLOW_PRIVATE_URLS="1")  # radosgw is on loopback
    job = JobContext("put", {}, tmp_path / "work", config)
    out, peak = _traced(lambda: job.deliver(path, signed))
    assert out == {"destination": signed.split("?")[0], "bytes": GB}
    assert peak < STREAMING_PEAK, f"{peak / 2**20:.0f} MiB held at once"
    assert _object_sha256(s3_client, s3_bucket, "put/result.bin") == (GB, digest)
    s3_client.delete_object(Bucket=s3_bucket, Key="put/result.bin")


def test_1_gb_without_a_destination_is_offloaded_to_the_volume(
    tmp_path: Path, volume: Path, one_gb: tuple[Path, str]
) -> None:
    path, digest = one_gb
    job = JobContext("vol", {}, tmp_path / "work", _config(volume))
    job.check_destination(None, most_bytes=GB)  # somewhere to put it: not refused
    out, peak = _traced(lambda: job.deliver(path, None))
    landed = volume / "runpod-slim-outputs" / "vol" / "result.bin"
    assert out == {
        "destination": "volume://runpod-slim-outputs/vol/result.bin",
        "path": str(landed.resolve()),
        "bytes": GB,
        "offloaded": "the result is 1000.0 MB, over the 7.0 MB returned inline "
        "(RUNPOD_SLIM_INLINE_MAX_MB; RunPod takes 10 MB on /run, 20 MB on /runsync)",
    }
    assert peak < STREAMING_PEAK, f"{peak / 2**20:.0f} MiB held at once"
    assert _file_sha256(landed) == digest
    assert [p.name for p in landed.parent.iterdir()] == ["result.bin"]  # no part file left
