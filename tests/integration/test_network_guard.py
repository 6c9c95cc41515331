"""No job connection reaches the worker's private side: DNS rebinding, redirects, and a job's
own S3 endpoint, tried inside a network namespace the test makes (tests/support/netns.py).

Every listener is the test's own, in that namespace; no other address is ever a target.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.netns import PUBLIC_BODY, run_in_namespace


def _namespaces_work() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
    return probe.returncode == 0


if not _namespaces_work():
    if os.environ.get("CI") == "true":
        raise RuntimeError("these tests need unshare -n and ip (root, util-linux, iproute2)")
    pytest.skip("network namespaces are not available here", allow_module_level=True)


def test_a_rebinding_name_is_fetched_from_the_address_checked(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    report = run_in_namespace("rebind", volume)
    direct, redirected = report["results"]
    assert report["hits"]["loopback"] == [], report
    assert direct.get("bytes") == len(PUBLIC_BODY), direct
    assert redirected.get("bytes") == len(PUBLIC_BODY), redirected
    assert report["files"] == {
        "direct.bin": PUBLIC_BODY.decode(),
        "redirected.bin": PUBLIC_BODY.decode(),
    }
    assert report["hits"]["public"] == ["GET /file", "GET /hop", "GET /file"]


def test_a_jobs_own_s3_endpoint_obeys_the_url_rules(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    report = run_in_namespace("endpoint", volume)
    metadata, loopback, rebinding, mapped = report["results"]
    assert report["hits"]["loopback"] == [] and report["hits"]["metadata"] == [], report
    assert metadata == {
        "error": "input.credentials.endpoint_url='http://169.254.169.254' points to a private "
        "or local address (169.254.169.254); refused. Set RUNPOD_SLIM_ALLOW_PRIVATE_URLS=1 to "
        "allow it"
    }
    assert "points to a private or local address (127.0.0.1)" in loopback["error"]
    assert "points to a private or local address" in mapped["error"]
    # The rebinding endpoint was resolved once, to the public address, and stayed there: the
    # test's public listener answered (not an S3 server, so the job fails), loopback did not.
    assert rebinding["error"].startswith("S3 refused s3://bucket/key"), rebinding
    assert any(hit.startswith("PUT /bucket/key") for hit in report["hits"]["public"])
    for text in (str(report["results"]), report["stderr"]):
        assert "SECRETCANARY" not in text
