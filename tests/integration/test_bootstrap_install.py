"""Real installs from the package index into temporary caches, as workers start.

The storage env (the RunPod SDK and boto3, about 100 packages, 130 MB) is the subject: big
enough to take a few seconds, small enough to install many times. Each test starts
`python3 -m bootstrap install` as a worker's start would, in its own process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootstrap.cache import Layout, read_manifest
from bootstrap.prune import list_envs
from tests.support.http import closed_port_url

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 300


def worker_env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_SLIM_")}
    env.update(
        HANDLER_TYPE="storage",
        RUNPOD_SLIM_CACHE=str(cache),
        RUNPOD_SLIM_VOLUME=str(cache.parent / "no-volume"),
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def start_install(cache: Path, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bootstrap", "install", "--json"],
        cwd=REPO,
        env=worker_env(cache, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a kill takes uv with it, as a container stop would
    )


def install(cache: Path, **extra: str) -> tuple[dict[str, object], str]:
    proc = start_install(cache, **extra)
    out, err = proc.communicate(timeout=INSTALL_TIMEOUT_S)
    assert proc.returncode == 0, err
    return json.loads(out), err


def only_env(cache: Path) -> Path:
    envs = list_envs(Layout(cache))
    assert len(envs) == 1, [e.key for e in envs]
    return envs[0].path


def test_cold_then_warm(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold, log = install(cache)
    assert cold["cold"] is True
    for phase in (
        "detect:",
        "plan:",
        "lookup: cold",
        "lock wait:",
        "download and install:",
        "smoke:",
        "publish:",
        "state=ready",
    ):
        assert phase in log, phase
    env = only_env(cache)
    manifest = read_manifest(env)
    assert manifest is not None and manifest["key"] == cold["key"] == env.name
    assert "boto3==1.44.5" in manifest["requirements"] or any(
        str(r).startswith("boto3==")
        for r in manifest["requirements"]  # type: ignore[union-attr]
    )
    probe = subprocess.run(
        [sys.executable, "-c", "import boto3, runpod; print(boto3.__file__)"],
        env={**os.environ, "PYTHONPATH": str(env / "site")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(str(env / "site"))

    warm, log = install(cache)
    assert warm["cold"] is False and warm["key"] == cold["key"]
    assert "lookup: warm" in log and "download and install" not in log
    assert list((cache / "staging").iterdir()) == []


def test_eight_workers_on_one_empty_cache_install_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    procs = [start_install(cache) for _ in range(8)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=INSTALL_TIMEOUT_S)
        assert proc.returncode == 0, err
        results.append((json.loads(out), err))
    assert sum(1 for result, _ in results if result["cold"]) >= 1
    installs = sum(err.count("download and install:") for _, err in results)
    assert installs == 1, f"{installs} workers installed"
    assert len({result["key"] for result, _ in results}) == 1
    env = only_env(cache)
    assert read_manifest(env) is not None
    assert list((cache / "staging").iterdir()) == []
    assert not (cache / "locks" / f"{env.name}.lock").exists()


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def installing_site(cache: Path) -> list[Path]:
    staging = cache / "staging"
    return [p / "site" for p in staging.iterdir()] if staging.is_dir() else []


@pytest.mark.parametrize(
    "point", ["during-install", "after-install", "after-smoke", "after-manifest"]
)
def test_killed_install_is_never_used_and_the_next_start_recovers(
    tmp_path: Path, point: str
) -> None:
    cache = tmp_path / "cache"
    if point == "during-install":
        proc = start_install(cache)

        def half_installed() -> bool:
            return any(
                site.is_dir() and len(list(site.iterdir())) > 20 for site in installing_site(cache)
            )

        wait_for(half_installed, INSTALL_TIMEOUT_S, "packages to land in staging")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    else:
        proc = start_install(cache, RUNPOD_SLIM_FAILPOINT=point)
        proc.communicate(timeout=INSTALL_TIMEOUT_S)
        assert proc.returncode == -signal.SIGKILL
    # What the killed start leaves: a staging dir and a lock whose owner is gone; no env.
    assert list((cache / "envs").iterdir()) == []
    assert len(list((cache / "staging").iterdir())) == 1
    assert len(list((cache / "locks").glob("*.lock"))) == 1

    result, log = install(cache)
    assert result["cold"] is True
    assert "lock: took over" in log and "which is gone" in log
    env = only_env(cache)
    assert read_manifest(env) is not None
    assert list((cache / "staging").iterdir()) == []
    warm, _ = install(cache)
    assert warm["cold"] is False


def test_unreachable_index_fails_clearly_in_bounded_time(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    began = time.monotonic()
    proc = start_install(
        cache, RUNPOD_SLIM_INDEX_URL=f"{closed_port_url()}/simple", RUNPOD_SLIM_RETRIES="1"
    )
    _, err = proc.communicate(timeout=INSTALL_TIMEOUT_S)
    took = time.monotonic() - began
    assert proc.returncode == 1
    assert "the package index could not be reached (after 2 attempts)" in err
    assert "state=failed" in err
    assert took < 120, f"took {took:.0f} s"
    assert list((cache / "envs").iterdir()) == [] and list((cache / "staging").iterdir()) == []


def test_warm_cache_starts_with_the_index_unreachable_and_offline(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    install(cache)
    dead = f"{closed_port_url()}/simple"
    result, _ = install(cache, RUNPOD_SLIM_INDEX_URL=dead)
    assert result["cold"] is False
    result, _ = install(cache, RUNPOD_SLIM_INDEX_URL=dead, RUNPOD_SLIM_OFFLINE="1")
    assert result["cold"] is False


def test_offline_cold_start_says_what_to_do(tmp_path: Path) -> None:
    proc = start_install(tmp_path / "cache", RUNPOD_SLIM_OFFLINE="1")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "is not in the cache" in err and "RUNPOD_SLIM_OFFLINE is set" in err
