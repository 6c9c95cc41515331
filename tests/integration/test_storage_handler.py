"""The storage handler against a real S3 server (Ceph radosgw) and a real volume directory.

Jobs go through handler.py's adapter, as the RunPod SDK calls it, so errors come back in the
one shape every caller sees.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from bootstrap.cache import Layout, new_staging, publish, write_manifest
from handler import adapt
from handlers.config import load_config
from handlers.storage import StorageHandler
from handlers.storage.settings import StorageSettings
from tests.support.http import serve
from tests.support.radosgw import RadosGateway

pytest_plugins = ["tests.support.s3_fixture"]

Run = Callable[..., dict[str, Any]]


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    path = tmp_path / "volume"
    path.mkdir()
    return path


@pytest.fixture
def run_job(s3_server: RadosGateway, volume: Path, tmp_path: Path) -> Run:
    """Runs one storage job with the worker's BUCKET_* credentials set to the test server."""
    environ = {
        "RUNPOD_SLIM_VOLUME": str(volume),
        "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
        "BUCKET_ENDPOINT_URL": s3_server.endpoint_url,
        "BUCKET_ACCESS_KEY_ID": s3_server.access_key,
        "BUCKET_SECRET_ACCESS_KEY": s3_server.secret_key,
    }

    def run(
        private_urls: bool = False, settings: StorageSettings | None = None, **job_input: Any
    ) -> dict[str, Any]:
        env = {**environ, "RUNPOD_SLIM_ALLOW_PRIVATE_URLS": "1" if private_urls else ""}
        handler = StorageHandler(load_config(env), settings or StorageSettings())
        job = adapt(handler, lambda job, message: None)
        result: dict[str, Any] = asyncio.run(job({"id": "test-job", "input": job_input}))
        return result

    return run


def write_random(path: Path, size: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = rng.randbytes(min(left, 1 << 20))
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def test_copy_base64_to_s3_then_back_to_the_volume(
    run_job: Run, s3_bucket: str, volume: Path
) -> None:
    data = b"hello from runpod-slim\n" * 1000
    sha = hashlib.sha256(data).hexdigest()
    up = run_job(
        action="copy",
        source_base64=base64.b64encode(data).decode(),
        destination=f"s3://{s3_bucket}/in/hello.txt",
    )
    assert up["destination"] == f"s3://{s3_bucket}/in/hello.txt"
    assert up["bytes"] == len(data) and up["sha256"] == sha
    with urllib.request.urlopen(up["url"]) as response:  # the presigned GET works
        assert response.read() == data
    down = run_job(
        action="copy", source=f"s3://{s3_bucket}/in/hello.txt", destination="volume://out/hello.txt"
    )
    assert down["sha256"] == sha and (volume / "out" / "hello.txt").read_bytes() == data
    assert "url" not in down


def test_large_object_round_trip_is_multipart_and_exact(
    run_job: Run, s3_bucket: str, s3_client: Any, volume: Path
) -> None:
    size = 70 * 2**20  # over 64 MiB: multipart
    sha = write_random(volume / "big.bin", size)
    up = run_job(action="copy", source="volume://big.bin", destination=f"s3://{s3_bucket}/big.bin")
    assert up["bytes"] == size and up["sha256"] == sha
    head = s3_client.head_object(Bucket=s3_bucket, Key="big.bin")
    assert head["ContentLength"] == size and "-" in head["ETag"]  # a multipart ETag
    down = run_job(
        action="copy", source=f"s3://{s3_bucket}/big.bin", destination="volume://back.bin"
    )
    assert down["sha256"] == sha
    assert hashlib.sha256((volume / "back.bin").read_bytes()).hexdigest() == sha


def test_copy_from_an_http_url(run_job: Run, s3_bucket: str, tmp_path: Path) -> None:
    site = tmp_path / "www"
    site.mkdir()
    (site / "clip.bin").write_bytes(b"\x00\x01" * 5000)
    with serve(site) as server:
        result = run_job(
            private_urls=True,
            action="copy",
            source=f"{server.url}/clip.bin",
            destination=f"s3://{s3_bucket}/clip.bin",
        )
    assert result["bytes"] == 10_000


def test_a_presigned_url_lives_as_long_as_the_worker_says_when_the_job_does_not(
    run_job: Run, s3_bucket: str, s3_client: Any
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="short.txt", Body=b"short-lived")
    source = f"s3://{s3_bucket}/short.txt"
    assert run_job(action="presign", source=source)["expires_s"] == 3600
    short = run_job(action="presign", source=source, settings=StorageSettings(expires_s=90))
    assert short["expires_s"] == 90 and "X-Amz-Expires=90" in short["url"]
    with urllib.request.urlopen(short["url"]) as response:
        assert response.read() == b"short-lived"
    asked = run_job(
        action="presign", source=source, expires_s=30, settings=StorageSettings(expires_s=90)
    )
    assert asked["expires_s"] == 30


def test_presign_stat_list_delete(run_job: Run, s3_bucket: str, s3_client: Any) -> None:
    for i in range(5):
        s3_client.put_object(Bucket=s3_bucket, Key=f"p/{i}.txt", Body=f"object {i}".encode())
    presigned = run_job(action="presign", source=f"s3://{s3_bucket}/p/3.txt", expires_s=60)
    with urllib.request.urlopen(presigned["url"]) as response:
        assert response.read() == b"object 3"
    stat = run_job(action="stat", source=f"s3://{s3_bucket}/p/3.txt")
    assert stat["size"] == 8 and stat["type"] == "file"
    names: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = run_job(
            action="list",
            source=f"s3://{s3_bucket}/p/",
            limit=2,
            **({"cursor": cursor} if cursor else {}),
        )
        names += [e["name"] for e in page["entries"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == [f"p/{i}.txt" for i in range(5)] and pages == 3
    assert run_job(action="delete", source=f"s3://{s3_bucket}/p/3.txt") == {
        "action": "delete",
        "source": f"s3://{s3_bucket}/p/3.txt",
        "deleted": True,
    }
    assert run_job(action="stat", source=f"s3://{s3_bucket}/p/3.txt")["error"].startswith(
        f"S3 refused s3://{s3_bucket}/p/3.txt: 404"
    )


def test_volume_list_stat_delete(run_job: Run, volume: Path) -> None:
    (volume / "d").mkdir()
    for name in "abc":
        (volume / "d" / f"{name}.txt").write_text(name * 3)
    first = run_job(action="list", source="volume://d", limit=2)
    assert [e["name"] for e in first["entries"]] == ["a.txt", "b.txt"]
    second = run_job(action="list", source="volume://d", limit=2, cursor=first["next_cursor"])
    assert [e["name"] for e in second["entries"]] == ["c.txt"] and second["next_cursor"] is None
    assert run_job(action="stat", source="volume://d/c.txt")["size"] == 3
    assert run_job(action="delete", source="volume://d/c.txt")["deleted"] is True
    assert not (volume / "d" / "c.txt").exists()


def test_job_credentials_override_and_wrong_ones_are_refused(
    run_job: Run, s3_bucket: str, s3_server: RadosGateway
) -> None:
    good = {
        "endpoint_url": s3_server.endpoint_url,
        "access_key_id": s3_server.access_key,
        "secret_access_key": s3_server.secret_key,
    }
    # The test server listens on loopback: a job's own endpoint there needs the same
    # RUNPOD_SLIM_ALLOW_PRIVATE_URLS as a loopback URL source.
    refused = run_job(
        action="copy", source_base64="eA==", destination=f"s3://{s3_bucket}/x", credentials=good
    )
    assert "points to a private or local address (127.0.0.1)" in refused["error"]
    ok = run_job(
        private_urls=True,
        action="copy",
        source_base64="eA==",
        destination=f"s3://{s3_bucket}/x",
        credentials=good,
    )
    assert ok["bytes"] == 1
    wrong_secret = {**good, "secret_access_key": "not-the-secret-0123456789"}
    refused = run_job(
        private_urls=True, action="stat", source=f"s3://{s3_bucket}/x", credentials=wrong_secret
    )
    assert refused["error"].startswith(f"S3 refused s3://{s3_bucket}/x: ")
    assert "not-the-secret-0123456789" not in str(refused)
    unknown_key = {**good, "access_key_id": "NOSUCHKEY"}
    refused = run_job(
        private_urls=True, action="stat", source=f"s3://{s3_bucket}/x", credentials=unknown_key
    )
    assert "403" in refused["error"] or "InvalidAccessKeyId" in refused["error"]


def test_cache_action_lists_and_prunes_bootstrap_envs(run_job: Run, tmp_path: Path) -> None:
    layout = Layout(tmp_path / "cache")  # the cache run_job's worker is configured with
    layout.prepare()
    for key, when in (("old-env", 1.0), ("new-env", 2.0)):
        staging = new_staging(layout, key)
        write_manifest(staging, {"key": key, "published_at": when, "size_bytes": 42})
        publish(staging, layout.env_dir(key))
    listed = run_job(action="cache")
    assert [e["key"] for e in listed["envs"]] == ["new-env", "old-env"]
    assert listed["envs"][0]["size_bytes"] == 42 and listed["removed"] == []
    dry = run_job(action="cache", prune=True, keep=1, dry_run=True)
    assert dry["removed"] == ["old-env"] and len(dry["envs"]) == 2
    pruned = run_job(action="cache", prune=True, keep=1)
    assert pruned["removed"] == ["old-env"] and [e["key"] for e in pruned["envs"]] == ["new-env"]


@pytest.mark.parametrize(
    ("job", "error"),
    [
        ({}, "input.action is required"),
        (
            {"action": "move"},
            "input.action='move' is not allowed: choose one of copy, presign, "
            "list, stat, delete, cache",
        ),
        (
            {"action": "copy", "destination": "volume://x"},
            "give exactly one of input.source and input.source_base64",
        ),
        (
            {"action": "copy", "source_base64": "eA==", "destination": "volume://x", "dest": 1},
            "input.dest is not a known field (did you mean 'destination'?); known fields: "
            "credentials, destination, expires_s, source, source_base64",
        ),
        ({"action": "stat", "source": 5}, "input.source must be a string, got integer 5"),
        (
            {"action": "stat", "source": "volume://../etc/passwd"},
            "input.source='volume://../etc/passwd' must be a relative path under the volume, "
            "without '..' (such as volume://inputs/clip.mp4)",
        ),
        (
            {"action": "stat", "source": "volume:///etc/passwd"},
            "input.source='volume:///etc/passwd' must be a relative path under the volume, "
            "without '..' (such as volume://inputs/clip.mp4)",
        ),
        (
            {"action": "copy", "source": "file:///etc/passwd", "destination": "volume://x"},
            "input.source='file:///etc/passwd' has scheme 'file'; allowed: https://, http://, "
            "s3://, volume://",
        ),
        (
            {"action": "copy", "source": "http://127.0.0.1:9/x", "destination": "volume://x"},
            "input.source='http://127.0.0.1:9/x' points to a private or local address "
            "(127.0.0.1); refused. Set RUNPOD_SLIM_ALLOW_PRIVATE_URLS=1 to allow it",
        ),
        (
            {"action": "copy", "source_base64": "not base64!", "destination": "volume://x"},
            "input.source_base64 is not valid base64",
        ),
        (
            {"action": "copy", "source_base64": "A" * 14_000_001, "destination": "volume://x"},
            "input.source_base64 is 14000001 long; the limit is 14000000",
        ),
        (
            {"action": "copy", "source_base64": "eA==", "destination": "ftp://example.com/x"},
            "input.destination='ftp://example.com/x' has scheme 'ftp'; allowed: s3://, "
            "volume://, https://, http://",
        ),
        (
            {"action": "presign", "source": "s3://b/k", "expires_s": 0},
            "input.expires_s=0 is too small: the minimum is 1",
        ),
    ],
)
def test_bad_input_gets_a_clear_error_and_the_worker_serves_on(
    run_job: Run, job: dict[str, Any], error: str, s3_bucket: str
) -> None:
    assert run_job(**job) == {"error": error}
    assert (
        run_job(action="copy", source_base64="eA==", destination=f"s3://{s3_bucket}/next")["bytes"]
        == 1
    )


def test_a_symlink_out_of_the_volume_is_refused(run_job: Run, volume: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("not yours")
    os.symlink(secret, volume / "link.txt")
    assert run_job(action="copy", source="volume://link.txt", destination="volume://y.txt") == {
        "error": "input.source='volume://link.txt' is a symlink, not a file; name a file"
    }
    os.symlink(tmp_path, volume / "dirlink")
    result = run_job(action="copy", source_base64="eA==", destination="volume://dirlink/x.txt")
    assert result == {
        "error": "input.destination='volume://dirlink/x.txt' leads through a symbolic link "
        "('dirlink'); links on the volume are not followed"
    }
    assert not (tmp_path / "x.txt").exists()


def test_copy_to_a_presigned_put_url(
    run_job: Run, s3_bucket: str, s3_client: Any, s3_client_factory: Callable[..., Any]
) -> None:
    """A client that signs its own upload URL gets the bytes there; the signature never shows."""
    signer = s3_client_factory(config=Config(signature_version="s3v4"))  # as tools sign today
    signed = signer.generate_presigned_url(
        "put_object", Params={"Bucket": s3_bucket, "Key": "put/hello.txt"}, ExpiresIn=600
    )
    signature = signed.split("?", 1)[1]
    data = b"hello through a signed PUT\n"
    result = run_job(
        private_urls=True,  # radosgw listens on loopback
        action="copy",
        source_base64=base64.b64encode(data).decode(),
        destination=signed,
    )
    assert result == {
        "action": "copy",
        "destination": signed.split("?", 1)[0],
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert signature not in repr(result)
    body = s3_client.get_object(Bucket=s3_bucket, Key="put/hello.txt")["Body"].read()
    assert body == data
    s3_client.delete_object(Bucket=s3_bucket, Key="put/hello.txt")
