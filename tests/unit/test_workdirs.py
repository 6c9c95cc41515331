"""handlers.workdirs: one locked folder of job folders per worker; dead workers' are swept.

Liveness is a flock held by a real process: the tests start real Python processes that take
it, and kill them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from handlers.workdirs import OWNER_FILE, PARENT_PREFIX, JobDirs, WorkerStopping, sweep

REPO = Path(__file__).resolve().parents[2]
# A worker in miniature: claims its folder, makes a job folder in it, says where, then waits.
_OWNER = """
import sys, time
from pathlib import Path
from handlers.workdirs import JobDirs
dirs = JobDirs.claim(Path(sys.argv[1]))
with dirs.job_dir() as job:
    (job / "part").write_bytes(b"x" * 1000)
    print(job, flush=True)
    time.sleep(600)
"""


def start_owner(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(parent)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # blocks until the folder exists, or the child dies
    assert line, f"the owner exited ({proc.wait()})"
    return proc, Path(line)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reaps it and closes its pipe


def test_a_job_folder_lives_in_the_workers_folder_and_goes_with_the_job(tmp_path: Path) -> None:
    dirs = JobDirs.claim(tmp_path)
    assert dirs.root.parent == tmp_path and dirs.root.name.startswith(PARENT_PREFIX)
    with dirs.job_dir() as job:
        assert job.parent == dirs.root and job.name.startswith("runpod-slim-job-")
        (job / "file").write_text("x")
    assert not job.exists()
    dirs.remove()
    dirs.remove()  # idempotent
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WorkerStopping), dirs.job_dir():
        pass


def test_a_dead_workers_folder_is_swept_and_a_live_ones_is_kept(tmp_path: Path) -> None:
    alive, alive_job = start_owner(tmp_path)
    dead, dead_job = start_owner(tmp_path)
    try:
        kill(dead)
        assert dead_job.exists()  # SIGKILL runs no cleanup: this is what a sweep is for
        mine = JobDirs.claim(tmp_path)
        assert not dead_job.parent.exists()
        assert alive_job.is_dir() and (alive_job / "part").stat().st_size == 1000
        assert sorted(tmp_path.iterdir()) == sorted([alive_job.parent, mine.root])
        assert sweep(tmp_path) == []  # both owners are alive now
        mine.remove()
    finally:
        kill(alive)
    assert sweep(tmp_path) == [alive_job.parent]
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_its_lock_is_left_while_it_may_be_being_made(tmp_path: Path) -> None:
    young = tmp_path / f"{PARENT_PREFIX}young"
    old = tmp_path / f"{PARENT_PREFIX}old"
    for folder in (young, old):
        folder.mkdir()
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    assert sweep(tmp_path) == [old]
    assert young.is_dir()


def test_a_sweep_follows_no_link_and_leaves_other_folders(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "keep").mkdir(parents=True)
    (elsewhere / OWNER_FILE).write_text("")
    (tmp_path / f"{PARENT_PREFIX}link").symlink_to(elsewhere)
    planted = tmp_path / f"{PARENT_PREFIX}planted"
    planted.mkdir()
    (planted / OWNER_FILE).symlink_to(elsewhere / OWNER_FILE)  # a lock that is a link
    (tmp_path / "runpod-slim-job-old").mkdir()  # not a worker's folder
    assert sweep(tmp_path) == []
    assert (elsewhere / "keep").is_dir() and planted.is_dir()
    assert (tmp_path / "runpod-slim-job-old").is_dir()
