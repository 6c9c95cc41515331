"""Starts with the cache on a real MooseFS volume, as RunPod's workers have it.

The volume is tests/support/moosefs.py's cluster, mounted twice: two worker nodes. Each start
is `python3 -m bootstrap install` in its own process with its own container disk (a local
dir), the cache on the volume, so the env is packed there (bootstrap/store.py: `auto` packs
when the cache is on another file system). The storage env is the subject, as in
test_bootstrap_install.py, whose local-disk twins of these tests stay there.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bootstrap.cache import Layout
from bootstrap.prune import list_envs
from tests.support.http import closed_port_url
from tests.support.moosefs import MooseFS

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 300
INSTALL = ("-m", "bootstrap", "install", "--json")


class Volume:
    """One test's cache on the shared MooseFS volume, and its worker nodes' container disks."""

    def __init__(self, fs: MooseFS, tmp: Path) -> None:
        self.fs = fs
        self.name = f"cache-{os.getpid()}-{random.getrandbits(32):08x}"
        self.tmp = tmp

    def cache(self, node: int) -> Path:
        return self.fs.mounts[node] / self.name

    def start(
        self, node: int, disk: str, argv: tuple[str, ...] = INSTALL, **extra: str
    ) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_SLIM_")}
        env.update(
            HANDLER_TYPE="storage",
            RUNPOD_SLIM_CACHE=str(self.cache(node)),
            RUNPOD_SLIM_VOLUME=str(self.tmp / "no-volume"),
            RUNPOD_SLIM_LOCAL_DIR=str(self.tmp / disk),
            PYTHONPATH=str(REPO),
            **extra,
        )
        return subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a kill takes uv and tar with it, as a container stop does
        )

    def install(self, node: int, disk: str, **extra: str) -> tuple[dict[str, object], str]:
        proc = self.start(node, disk, **extra)
        out, err = proc.communicate(timeout=INSTALL_TIMEOUT_S)
        assert proc.returncode == 0, err
        return json.loads(out), err

    def env_dirs(self) -> list[Path]:
        envs = self.cache(0) / "envs"
        return sorted(envs.iterdir()) if envs.is_dir() else []

    def staging(self) -> list[Path]:
        staging = self.cache(0) / "staging"
        return sorted(staging.iterdir()) if staging.is_dir() else []


@pytest.fixture
def volume(moosefs: MooseFS, tmp_path: Path) -> Iterator[Volume]:
    vol = Volume(moosefs, tmp_path)
    yield vol
    shutil.rmtree(vol.cache(0), ignore_errors=True)


def imports_from(site_dir: str) -> str:
    probe = subprocess.run(
        [sys.executable, "-c", "import boto3, runpod; print(boto3.__file__)"],
        env={**os.environ, "PYTHONPATH": site_dir},
        capture_output=True,
        text=True,
        check=True,
    )
    return probe.stdout.strip()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_installed_on_one_node_hydrated_on_another(volume: Volume) -> None:
    cold, log = volume.install(0, "node0")
    assert cold["cold"] is True
    assert "publish:" in log and "archives and" in log
    [env] = volume.env_dirs()
    # On the volume: a manifest and a few large files, not thousands of small ones.
    on_volume = [p for p in env.rglob("*") if p.is_file()]
    assert len(on_volume) < 60, len(on_volume)
    assert (env / "manifest.json").is_file()
    assert imports_from(str(cold["site"])).startswith(str(volume.tmp / "node0"))

    warm, log = volume.install(1, "node1")
    assert warm["cold"] is False and warm["key"] == cold["key"]
    assert "lookup: warm, packed on the volume" in log and "hydrate:" in log
    assert "download and install" not in log
    assert imports_from(str(warm["site"])).startswith(str(volume.tmp / "node1"))

    again, log = volume.install(1, "node1")
    assert "lookup: warm, hydrated on this container's disk" in log and "hydrate:" not in log
    assert again["site"] == warm["site"]
    assert volume.staging() == []


def test_eight_workers_on_two_nodes_install_once(volume: Volume) -> None:
    # Half start as the worker does (importing while the rest of the env hydrates), half
    # through `bootstrap install`.
    procs = [
        worker(volume, i % 2, f"worker{i}") if i % 4 >= 2 else volume.start(i % 2, f"worker{i}")
        for i in range(8)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=INSTALL_TIMEOUT_S)
        assert proc.returncode == 0, err
        results.append((json.loads(out), err))
    installs = sum(err.count("download and install:") for _, err in results)
    assert installs == 1, f"{installs} workers installed"
    assert len({result["key"] for result, _ in results}) == 1
    assert len(volume.env_dirs()) == 1 and volume.staging() == []
    assert not list((volume.cache(0) / "locks").glob("*.lock"))
    for result, _ in results:
        assert imports_from(str(result["site"])).startswith(str(volume.tmp))


@pytest.mark.parametrize(
    "point",
    [
        "during-install",
        "after-install",
        "after-smoke",
        "during-publish",
        "after-pack",
        "after-manifest",
    ],
)
def test_a_killed_install_is_never_used_and_the_next_start_recovers(
    volume: Volume, point: str
) -> None:
    if point.startswith("during-"):
        proc = volume.start(0, "node0")
        local_staging = volume.tmp / "node0" / "staging"

        def installing() -> bool:
            sites = [p / "site" for p in local_staging.iterdir()] if local_staging.is_dir() else []
            return any(s.is_dir() and len(list(s.iterdir())) > 20 for s in sites)

        def publishing() -> bool:
            return any(
                (s / "parts").is_dir() and any((s / "parts").iterdir()) for s in volume.staging()
            )

        wait_for(installing if point == "during-install" else publishing, INSTALL_TIMEOUT_S, point)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    else:
        proc = volume.start(0, "node0", RUNPOD_SLIM_FAILPOINT=point)
        proc.communicate(timeout=INSTALL_TIMEOUT_S)
        assert proc.returncode == -signal.SIGKILL
    assert volume.env_dirs() == []  # nothing published, so nothing can be used

    # The other node takes over the dead installer's lock and installs.
    result, log = volume.install(1, "node1")
    assert result["cold"] is True
    assert "lock: took over" in log
    assert len(volume.env_dirs()) == 1 and volume.staging() == []
    # The killed node's container disk is swept by its next start, which finds the env warm.
    again, log = volume.install(0, "node0")
    assert again["cold"] is False and "hydrate:" in log
    assert [p.name for p in (volume.tmp / "node0" / "staging").iterdir()] == []
    assert imports_from(str(again["site"])).startswith(str(volume.tmp / "node0"))


def test_a_killed_hydration_is_never_used(volume: Volume) -> None:
    volume.install(0, "node0")
    proc = volume.start(1, "node1", RUNPOD_SLIM_FAILPOINT="after-hydrate")
    proc.communicate(timeout=INSTALL_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL
    assert not (volume.tmp / "node1" / "envs").is_dir()
    result, log = volume.install(1, "node1")
    assert result["cold"] is False and "hydrate:" in log
    assert os.listdir(volume.tmp / "node1" / "staging") == []


def test_a_truncated_manifest_is_set_aside_and_rebuilt_once(volume: Volume) -> None:
    volume.install(0, "node0")
    [env] = volume.env_dirs()
    manifest = env / "manifest.json"
    manifest.write_text(manifest.read_text()[:100])
    result, log = volume.install(1, "node1")
    assert result["cold"] is True
    assert "is truncated or not a complete manifest" in log
    assert "setting it aside to install it again" in log
    assert len(volume.env_dirs()) == 1
    again, log = volume.install(0, "node0-new")
    assert again["cold"] is False and "download and install" not in log


def test_a_damaged_archive_is_caught_at_hydration_and_rebuilt(volume: Volume) -> None:
    volume.install(0, "node0")
    [env] = volume.env_dirs()
    archive = env / "parts" / "small-000.tar.zst"
    with archive.open("r+b") as out:
        out.seek(archive.stat().st_size // 2)
        out.write(b"\0" * 64)
    result, log = volume.install(1, "node1")
    assert "small-000.tar.zst is damaged" in log
    assert "setting it aside" in log and result["cold"] is True
    assert imports_from(str(result["site"])).startswith(str(volume.tmp / "node1"))


def test_a_file_deleted_from_the_local_copy_is_hydrated_again(volume: Volume) -> None:
    cold, _ = volume.install(0, "node0")
    site = Path(str(cold["site"]))
    (site / "boto3" / "__init__.py").unlink()
    result, log = volume.install(0, "node0")
    assert result["cold"] is False and "hydrate:" in log
    assert "download and install" not in log
    assert (site / "boto3" / "__init__.py").is_file()


def test_a_packed_volume_starts_offline_on_a_new_node(volume: Volume) -> None:
    volume.install(0, "node0")
    dead = f"{closed_port_url()}/simple"
    result, log = volume.install(1, "node1", RUNPOD_SLIM_INDEX_URL=dead, RUNPOD_SLIM_OFFLINE="1")
    assert result["cold"] is False and "hydrate:" in log


def test_envs_seen_by_prune_on_the_volume(volume: Volume) -> None:
    volume.install(0, "node0")
    envs = list_envs(Layout(volume.cache(1)))
    assert len(envs) == 1 and "parts" in envs[0].manifest


# A worker's start on a new node (handler.py does the same): the env with its rest still
# hydrating (bootstrap/backfill.py), the imports meanwhile, then the whole env before a job.
WORKER = r"""
import json, os, sys
from bootstrap import ensure, load_settings
from bootstrap import BootstrapError
env = ensure(load_settings(os.environ), whole=False)
import boto3, runpod
imported = [boto3.__file__, runpod.__file__]
try:
    env.wait_whole()
except BootstrapError as exc:
    print("the worker cannot start:", exc, file=sys.stderr)
    raise SystemExit(3)
from botocore import waiter  # a module of the rest: there now
print(json.dumps({"key": env.key, "cold": env.cold, "site": str(env.site_dir),
                  "imported": imported, "rest": waiter.__file__}))
"""


def worker(volume: Volume, node: int, disk: str, **extra: str) -> subprocess.Popen[str]:
    return volume.start(node, disk, ("-c", WORKER), **extra)


def test_a_new_node_imports_while_the_rest_hydrates_and_serves_only_whole(volume: Volume) -> None:
    volume.install(0, "node0")
    [env] = volume.env_dirs()
    parts = json.loads((env / "manifest.json").read_text())["parts"]
    assert any(a.get("rest") for a in parts["archives"])  # the smoke test's imports recorded
    proc = worker(volume, 1, "node1")
    out, log = proc.communicate(timeout=INSTALL_TIMEOUT_S)
    assert proc.returncode == 0, log
    result = json.loads(out)
    assert "the rest meanwhile" in log and "hydrate: the rest, " in log
    node1 = volume.tmp / "node1"
    assert all(path.startswith(str(node1)) for path in [*result["imported"], result["rest"]])
    local_env = Path(result["site"]).parent
    assert (local_env / "hydrated.json").is_file() and not (local_env / "rest").exists()
    assert not (local_env / ".hydrating").exists()
    # Whole, so the next start on this container uses it as it is.
    again, log = volume.install(1, "node1")
    assert "lookup: warm, hydrated on this container's disk" in log and "hydrate:" not in log
    assert again["site"] == result["site"]


def files_of(site: Path) -> set[str]:
    """What a site holds but bytecode (which each node's own imports may add)."""
    return {
        str(p.relative_to(site)) for p in site.rglob("*") if not p.is_dir() and p.suffix != ".pyc"
    }


@pytest.mark.parametrize("how", ["failpoint", "random"])
def test_a_start_killed_while_the_rest_hydrates_is_hydrated_again(volume: Volume, how: str) -> None:
    installed, _ = volume.install(0, "node0")
    envs = volume.tmp / "node1" / "envs"
    if how == "failpoint":  # after the rest is unpacked beside the site, before it moves in
        proc = worker(volume, 1, "node1", RUNPOD_SLIM_FAILPOINT="after-rest-unpack")
        out, log = proc.communicate(timeout=INSTALL_TIMEOUT_S)
        assert proc.returncode == 3 and out == "", log  # it never served
        assert "was killed (signal 9); the next start on this container hydrates it again" in log
    else:  # a container stop at a random moment while the rest is being hydrated
        proc = worker(volume, 1, "node1")
        wait_for(lambda: any(envs.glob("*/rest")), INSTALL_TIMEOUT_S, "the rest to start")
        time.sleep(random.uniform(0, 0.5))  # not a wait: a random moment of the rest's work
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    [copy] = envs.iterdir()
    whole_before = (copy / "hydrated.json").exists()
    assert how == "random" or not whole_before
    proc = worker(volume, 1, "node1")
    out, log = proc.communicate(timeout=INSTALL_TIMEOUT_S)
    assert proc.returncode == 0, log
    assert ("hydrate:" in log) != whole_before  # an unfinished copy is hydrated again, anew
    site = Path(json.loads(out)["site"])
    assert (site.parent / "hydrated.json").is_file()
    assert files_of(site) == files_of(Path(str(installed["site"])))
    assert os.listdir(volume.tmp / "node1" / "staging") == []


def test_the_worker_serves_on_a_new_node_only_once_the_env_is_whole(volume: Volume) -> None:
    """handler.py itself: it imports while the rest hydrates, then serves its first job."""
    volume.install(0, "node0")
    out = volume.tmp / "volume"
    out.mkdir()
    job = {"input": {"action": "copy", "source_base64": "aGk=", "destination": "volume://hi"}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_SLIM_")}
    env.update(
        HANDLER_TYPE="storage",
        RUNPOD_SLIM_CACHE=str(volume.cache(1)),
        RUNPOD_SLIM_VOLUME=str(out),
        RUNPOD_SLIM_LOCAL_DIR=str(volume.tmp / "node1"),
    )
    served = subprocess.run(
        [sys.executable, "handler.py", "--test_input", json.dumps(job)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, so that the order of the lines is kept
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    log = served.stdout
    assert served.returncode == 0, log[-3000:]
    assert "Job local_test completed successfully." in log
    assert (out / "hi").read_bytes() == b"hi"
    rest_in = log.index("hydrate: the rest, ")
    assert log.index("the rest meanwhile") < rest_in < log.index("Starting Serverless Worker")
