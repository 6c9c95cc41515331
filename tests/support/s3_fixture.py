"""pytest plugin: a real S3 server (Ceph radosgw) for the test session.

Load it from a test module with ``pytest_plugins = ["tests.support.s3_fixture"]``
(or from the root ``conftest.py``).  Fixtures:

``s3_server``
    session-scoped :class:`~tests.support.radosgw.RadosGateway`, started once
    under the session's temporary directory; its ``endpoint_url``,
    ``access_key``, ``secret_key`` and ``region`` are what S3 clients need.
``s3_client``
    session-scoped boto3 S3 client for ``s3_server``.
``s3_client_factory``
    session-scoped callable ``(**overrides) -> client`` making more boto3 S3
    clients for ``s3_server``, e.g. with other credentials.
``s3_bucket``
    name of a fresh, empty, uniquely named bucket; emptied and deleted after
    the test.

Without the Ceph binaries the server fixture skips the test, or fails it when
``CI`` is true in the environment, since CI must run every test: both say to
run ``scripts/install-test-deps.sh``.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import pytest

from tests.support.radosgw import RadosGateway, missing_binaries

#: boto3 builds its client classes at run time; no static type to name here.
S3Client: TypeAlias = Any

__all__ = ["make_s3_client", "s3_bucket", "s3_client", "s3_client_factory", "s3_server"]

INSTALL_HINT = "run scripts/install-test-deps.sh (as root, or with sudo) to install them"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def make_s3_client(server: RadosGateway, **overrides: Any) -> S3Client:
    """A boto3 S3 client for ``server``; ``overrides`` replace its arguments."""
    import boto3

    kwargs: dict[str, Any] = {**server.boto3_client_kwargs(), **overrides}
    return boto3.client("s3", **kwargs)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadosGateway]:
    """One throwaway Ceph cluster with radosgw for the whole test session."""
    missing = missing_binaries()
    if missing:
        message = f"Ceph binaries not found ({', '.join(missing)}): {INSTALL_HINT}"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    gateway = RadosGateway(tmp_path_factory.mktemp("radosgw"))
    with gateway:
        yield gateway


@pytest.fixture(scope="session")
def s3_client(s3_server: RadosGateway) -> S3Client:
    """A boto3 S3 client authenticated as the server's test user."""
    return make_s3_client(s3_server)


@pytest.fixture(scope="session")
def s3_client_factory(s3_server: RadosGateway) -> Callable[..., S3Client]:
    """Make boto3 S3 clients for the server; keyword arguments override defaults.

    Test modules use this instead of importing :func:`make_s3_client`: a
    module imported before pytest loads it as a plugin cannot have its
    assertions rewritten, and pytest warns (an error under ``-W error``).
    """
    return functools.partial(make_s3_client, s3_server)


@pytest.fixture
def s3_bucket(s3_client: S3Client) -> Iterator[str]:
    """A new empty bucket for one test; emptied and deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        _delete_bucket(s3_client, name)


def _delete_bucket(client: S3Client, name: str) -> None:
    """Abort unfinished uploads, delete every object, then the bucket."""
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=name)
