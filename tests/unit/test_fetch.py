"""Pinned downloads over real HTTP: cached, hash-checked, retried, never half-written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bootstrap.errors import FetchError
from bootstrap.fetch import download, index_file_url
from tests.support.http import closed_port_url, serve

PAYLOAD = b"wheel bytes " * 100_000


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "simple" / "demo").mkdir(parents=True)
    (root / "files").mkdir()
    (root / "files" / "demo-1.0-py3-none-any.whl").write_bytes(PAYLOAD)
    (root / "simple" / "demo" / "index.html").write_text(
        '<html><body><a href="../../files/demo-1.0-py3-none-any.whl#sha256=00">'
        "demo-1.0-py3-none-any.whl</a></body></html>"
    )
    return root


def test_download_checks_the_hash_and_caches(served: Path, tmp_path: Path) -> None:
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    dest = tmp_path / "out" / "demo.whl"
    with serve(served) as server:
        url = f"{server.url}/files/demo-1.0-py3-none-any.whl"
        assert download(url, dest, sha, ca_bundle=None, retries=0, log=print) == dest
        assert dest.read_bytes() == PAYLOAD
        download(url, dest, sha, ca_bundle=None, retries=0, log=print)
        assert len(server.requests) == 1  # the second call found it in place


def test_wrong_hash_is_refused_and_nothing_is_left(served: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "demo.whl"
    with serve(served) as server, pytest.raises(FetchError) as info:
        download(
            f"{server.url}/files/demo-1.0-py3-none-any.whl",
            dest,
            "ab" * 32,
            ca_bundle=None,
            retries=3,
            log=print,
        )
    assert "expected " + "ab" * 32 + ": not the pinned file, refused" in str(info.value)
    assert list(dest.parent.iterdir()) == []


def test_server_errors_are_retried_with_backoff(served: Path, tmp_path: Path) -> None:
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    waits: list[float] = []
    logged: list[str] = []
    with serve(served) as server:
        server.fail_next(2)
        download(
            f"{server.url}/files/demo-1.0-py3-none-any.whl",
            tmp_path / "d.whl",
            sha,
            ca_bundle=None,
            retries=3,
            log=logged.append,
            sleep=waits.append,
        )
    assert waits == [2.0, 4.0]
    assert len(logged) == 2 and "retrying in 2 s (1/3)" in logged[0]


def test_missing_file_is_not_retried(served: Path, tmp_path: Path) -> None:
    waits: list[float] = []
    with serve(served) as server, pytest.raises(FetchError, match="HTTP 404"):
        download(
            f"{server.url}/files/nope.whl",
            tmp_path / "d.whl",
            "00" * 32,
            ca_bundle=None,
            retries=3,
            log=print,
            sleep=waits.append,
        )
    assert waits == []


def test_unreachable_host_fails_after_the_retries(tmp_path: Path) -> None:
    waits: list[float] = []
    with pytest.raises(FetchError, match=r"after 3 attempts"):
        download(
            f"{closed_port_url()}/x.whl",
            tmp_path / "d.whl",
            "00" * 32,
            ca_bundle=None,
            retries=2,
            log=print,
            sleep=waits.append,
        )
    assert waits == [2.0, 4.0]


def test_index_lookup_from_a_simple_html_page(served: Path) -> None:
    with serve(served) as server:
        url = index_file_url(
            f"{server.url}/simple", "demo", "demo-1.0-py3-none-any.whl", ca_bundle=None
        )
        assert url == f"{server.url}/files/demo-1.0-py3-none-any.whl"
        with pytest.raises(FetchError, match=r"the index lists no file named demo-2\.0"):
            index_file_url(
                f"{server.url}/simple", "demo", "demo-2.0-py3-none-any.whl", ca_bundle=None
            )
