"""Wheels from the image's wheelhouse are used only when they are the pinned bytes; the
wheelhouse's pins are the modules' own; a certificate failure is named as one.

NVML's library is a boundary that cannot exist here (no GPU driver): `library_loadable` is
the fake. The HTTPS index with an untrusted certificate is real (openssl, on loopback).
"""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.cache import Layout
from bootstrap.errors import BootstrapError
from bootstrap.installer import UV_WHEELS, find_tool, provision_uv
from bootstrap.nvml import NVML_SHA256, NVML_WHEEL, load_pynvml
from bootstrap.settings import load_settings
from bootstrap.wheelhouse import pinned_wheels


def test_the_wheelhouse_holds_the_modules_own_pins() -> None:
    wheels = {w.project: w for w in pinned_wheels("x86_64")}
    assert (wheels["nvidia-ml-py"].filename, wheels["nvidia-ml-py"].sha256) == (
        NVML_WHEEL,
        NVML_SHA256,
    )
    assert (wheels["uv"].filename, wheels["uv"].sha256) == UV_WHEELS["x86_64"]
    with pytest.raises(BootstrapError, match="no pinned uv wheel for riscv64"):
        pinned_wheels("riscv64")


def test_a_tampered_nvml_wheel_in_the_wheelhouse_is_not_imported(tmp_path: Path) -> None:
    (tmp_path / "wheelhouse").mkdir()
    # A wheel whose pynvml would run at every start: it must never be imported.
    (tmp_path / "wheelhouse" / NVML_WHEEL).write_bytes(b"PK not the pinned wheel")
    settings = load_settings(
        {
            "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
            "RUNPOD_SLIM_WHEELHOUSE": str(tmp_path / "wheelhouse"),
            "RUNPOD_SLIM_OFFLINE": "1",
        }
    )
    logged: list[str] = []
    with pytest.raises(BootstrapError, match="pynvml is not in the cache or the wheelhouse"):
        load_pynvml(
            settings, Layout(settings.cache_root), log=logged.append, library_loadable=lambda: True
        )
    assert logged == [
        f"nvml: {tmp_path / 'wheelhouse' / NVML_WHEEL} is not the pinned nvidia-ml-py wheel "
        "(its sha256 differs); not used"
    ]


def test_a_tampered_uv_wheel_in_the_wheelhouse_is_not_unpacked(tmp_path: Path) -> None:
    filename, _ = UV_WHEELS["x86_64"]
    (tmp_path / "wheelhouse").mkdir()
    (tmp_path / "wheelhouse" / filename).write_bytes(b"PK not the pinned wheel")
    settings = load_settings(
        {
            "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
            "RUNPOD_SLIM_WHEELHOUSE": str(tmp_path / "wheelhouse"),
            "RUNPOD_SLIM_OFFLINE": "1",
        }
    )
    logged: list[str] = []
    with pytest.raises(BootstrapError, match="uv is not in the cache"):
        provision_uv(settings, Layout(settings.cache_root), log=logged.append, machine="x86_64")
    assert logged == [
        f"installer: {tmp_path / 'wheelhouse' / filename} is not the pinned uv wheel "
        "(sha256 differs); not used"
    ]


@pytest.fixture
def untrusted_index(tmp_path: Path) -> Iterator[str]:
    """An HTTPS index on loopback whose certificate no CA bundle here trusts (self-signed)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_untrusted_certificate_is_named_not_a_missing_tool(
    tmp_path: Path, untrusted_index: str
) -> None:
    settings = load_settings(
        {
            "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
            "RUNPOD_SLIM_WHEELHOUSE": str(tmp_path / "no-wheelhouse"),
            "RUNPOD_SLIM_INDEX_URL": untrusted_index,
        }
    )
    with pytest.raises(BootstrapError) as info:
        find_tool(
            settings,
            Layout(settings.cache_root),
            log=lambda line: None,
            which=lambda name: None,  # no uv on PATH
            python="/bin/false",  # a Python without pip, as in the image
            machine="x86_64",
        )
    message = str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "the index's TLS certificate is not trusted here" in message
    assert "SSL_CERT_FILE" in message and "--ca-cert" in message
    assert "neither uv nor pip" not in message and "\n" not in message
