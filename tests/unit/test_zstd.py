"""bootstrap/zstd.py against the system's real libzstd, cross-checked with the zstd command."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from bootstrap import zstd


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    return iter([data[i : i + size] for i in range(0, len(data), size)])


def sample() -> bytes:
    """Text-like and random bytes, several times the 128 KB output buffer."""
    text = b"".join(b"def f%d(x):\n    return x * %d\n" % (n, n) for n in range(60_000))
    return text + os.urandom(600_000) + text[:300_000]


def test_the_machine_has_libzstd() -> None:
    assert zstd.available(), f"{zstd.LIBRARY} cannot be loaded: envs would fall back to gzip"


@pytest.mark.parametrize("size", [1, 4096, 1 << 20, 64 << 20])
def test_a_round_trip_in_pieces_of_any_size(size: int) -> None:
    data = sample()
    packed = b"".join(zstd.compress(pieces(data, 1 << 20)))
    assert len(packed) < len(data) * 0.6
    source = pieces(packed, size) if size > 1 else pieces(packed[:5000], 1)
    if size == 1:  # byte by byte is slow in Python: the first 5,000 bytes, then the rest
        source = iter([*source, packed[5000:]])
    assert b"".join(zstd.decompress(source)) == data


def test_empty_input_is_one_empty_frame() -> None:
    packed = b"".join(zstd.compress(iter([])))
    assert packed and b"".join(zstd.decompress(iter([packed]))) == b""


def test_the_zstd_command_reads_what_this_writes_and_the_other_way() -> None:
    assert shutil.which("zstd"), "no zstd command: run scripts/install-test-deps.sh"
    data = sample()
    ours = b"".join(zstd.compress(iter([data])))
    assert (
        subprocess.run(["zstd", "-dc"], input=ours, capture_output=True, check=True).stdout == data
    )
    theirs = subprocess.run(
        ["zstd", "-c", "-9"], input=data, capture_output=True, check=True
    ).stdout
    assert b"".join(zstd.decompress(iter([theirs]))) == data


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-7], "the stream ends before its frame does"),
        (lambda b: b + b"more", "data after the end of the frame"),
        (lambda b: b"\x00" * 8 + b[8:], "Unknown frame descriptor"),
    ],
    ids=["cut-short", "trailing-bytes", "not-zstd"],
)
def test_a_broken_stream_is_an_error_not_bytes(damage, message: str) -> None:  # type: ignore[no-untyped-def]
    packed = b"".join(zstd.compress(iter([sample()])))
    with pytest.raises(zstd.ZstdError, match=message):
        for _ in zstd.decompress(pieces(damage(packed), 1 << 16)):
            pass
