"""The S3 server the tests use is a real one: Ceph radosgw, not a mock.

These tests check the behaviour other tests rely on: bytes survive a round
trip, multipart uploads of large objects work, signatures are verified,
presigned URLs work with a plain HTTP client, and listings paginate.
"""

from __future__ import annotations

import hashlib
import random
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.radosgw import RadosGateway

pytest_plugins = ["tests.support.s3_fixture"]

MIB = 1024 * 1024
# Plain stdlib HTTP, bypassing any HTTP(S)_PROXY in the environment: the server is on loopback.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


class _SeededStream:
    """A read-only, non-seekable file object of ``size`` bytes from ``seed``.

    The bytes are generated as they are read (a short read only at the end),
    so the whole payload is never in memory; ``digest`` is their sha256.
    """

    def __init__(self, seed: int, size: int) -> None:
        self._rng = random.Random(seed)
        self._remaining = size
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        count = self._remaining if size < 0 else min(size, self._remaining)
        data = self._rng.randbytes(count)
        self._remaining -= count
        self.digest.update(data)
        return data


class _HashingSink:
    """A write-only file object that keeps only the sha256 and size of what it got."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return len(data)


def test_server_attributes(s3_server: RadosGateway) -> None:
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")
    assert len(s3_server.access_key) >= 16
    assert len(s3_server.secret_key) >= 32
    assert s3_server.region
    assert set(s3_server.pids) == {"mon", "osd", "rgw"}


def test_put_get_round_trip(s3_client: Any, s3_bucket: str) -> None:
    body = _random_bytes(seed=1, size=3 * MIB + 17)
    s3_client.put_object(Bucket=s3_bucket, Key="dir/blob.bin", Body=body)

    head = s3_client.head_object(Bucket=s3_bucket, Key="dir/blob.bin")
    assert head["ContentLength"] == len(body)
    # A single-part upload's ETag is the MD5 of the content.
    assert head["ETag"].strip('"') == hashlib.md5(body, usedforsecurity=False).hexdigest()

    got = s3_client.get_object(Bucket=s3_bucket, Key="dir/blob.bin")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()

    with pytest.raises(ClientError) as excinfo:
        s3_client.get_object(Bucket=s3_bucket, Key="dir/missing.bin")
    assert excinfo.value.response["Error"]["Code"] == "NoSuchKey"


def test_multipart_upload_over_64_mib(s3_client: Any, s3_bucket: str) -> None:
    size = 64 * MIB + 5 * MIB + 12345  # not a multiple of the part size
    part = 8 * MIB
    config = TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=4)
    # Streamed both ways: neither the test nor the disk holds the 69 MiB.
    source = _SeededStream(seed=64, size=size)
    s3_client.upload_fileobj(source, s3_bucket, "big/object.bin", Config=config)

    head = s3_client.head_object(Bucket=s3_bucket, Key="big/object.bin")
    assert head["ContentLength"] == size
    # Multipart ETags are "<md5 of the parts' md5s>-<number of parts>".
    assert head["ETag"].strip('"').endswith(f"-{-(-size // part)}")

    sink = _HashingSink()
    s3_client.download_fileobj(s3_bucket, "big/object.bin", sink, Config=config)
    assert sink.size == size
    assert sink.digest.hexdigest() == source.digest.hexdigest()


@pytest.mark.parametrize(
    ("wrong", "codes"),
    [
        pytest.param(
            {"aws_secret_access_key": "wrong-secret-" + "x" * 27},
            {"SignatureDoesNotMatch", "AccessDenied"},
            id="wrong-secret",
        ),
        pytest.param(
            {"aws_access_key_id": "AKIDOESNOTEXIST00000"},
            {"InvalidAccessKeyId", "AccessDenied"},
            id="unknown-access-key",
        ),
    ],
)
def test_wrong_credentials_are_refused(
    s3_client_factory: Callable[..., Any], s3_bucket: str, wrong: dict[str, str], codes: set[str]
) -> None:
    client = s3_client_factory(**wrong)
    with pytest.raises(ClientError) as excinfo:
        client.list_objects_v2(Bucket=s3_bucket)
    assert excinfo.value.response["Error"]["Code"] in codes
    with pytest.raises(ClientError) as excinfo:
        client.put_object(Bucket=s3_bucket, Key="intruder", Body=b"nope")
    assert excinfo.value.response["Error"]["Code"] in codes


def test_anonymous_access_is_refused(s3_server: RadosGateway, s3_bucket: str) -> None:
    url = f"{s3_server.endpoint_url}/{s3_bucket}/"
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        HTTP.open(url, timeout=10)
    assert excinfo.value.code == 403
    excinfo.value.close()


@pytest.mark.parametrize(
    ("signature_version", "signature_param"),
    [("s3v4", "X-Amz-Signature"), ("s3", "Signature")],
    ids=["sigv4", "sigv2"],
)
def test_presigned_get_url_works_with_urllib(
    s3_client: Any,
    s3_client_factory: Callable[..., Any],
    s3_bucket: str,
    signature_version: str,
    signature_param: str,
) -> None:
    body = _random_bytes(seed=7, size=256 * 1024)
    s3_client.put_object(Bucket=s3_bucket, Key="shared/file.bin", Body=body)
    signer = s3_client_factory(config=Config(signature_version=signature_version))
    url = signer.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": "shared/file.bin"}, ExpiresIn=300
    )
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    assert signature_param in query

    with HTTP.open(url, timeout=30) as response:
        assert response.status == 200
        got = response.read()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()

    # The signature is checked: a URL with another signature is refused.
    signature = query[signature_param][0]
    query[signature_param] = [signature[::-1]]
    tampered = parts._replace(query=urllib.parse.urlencode(query, doseq=True)).geturl()
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        HTTP.open(tampered, timeout=30)
    assert excinfo.value.code == 403
    excinfo.value.close()


def test_list_objects_paginates(s3_client: Any, s3_bucket: str) -> None:
    keys = {f"items/{index:03d}.txt" for index in range(23)}
    for key in keys:
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())
    s3_client.put_object(Bucket=s3_bucket, Key="other/ignored.txt", Body=b"x")

    pages = list(
        s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_bucket, Prefix="items/", PaginationConfig={"PageSize": 5}
        )
    )
    assert [page["KeyCount"] for page in pages] == [5, 5, 5, 5, 3]
    assert all(page["IsTruncated"] for page in pages[:-1])
    assert not pages[-1]["IsTruncated"]
    listed = [obj["Key"] for page in pages for obj in page["Contents"]]
    assert listed == sorted(keys)

    # The same by hand with continuation tokens.
    seen: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": s3_bucket, "Prefix": "items/", "MaxKeys": 7}
    while True:
        page = s3_client.list_objects_v2(**kwargs)
        seen += [obj["Key"] for obj in page["Contents"]]
        if not page["IsTruncated"]:
            break
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    assert seen == sorted(keys)
