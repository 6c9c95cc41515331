"""handlers.stopping: on SIGTERM, running jobs are cancelled and answer so, the job folders go,
and the signal reaches the handler the SDK installed (or ends the process when there is none).

Each case is a real Python process that gets a real SIGTERM.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A worker in miniature: its job folders, its SIGTERM handling, one job that waits. With "sdk",
# a handler like the RunPod SDK's job loop's is installed after the worker's (as the SDK does
# when it starts serving) and ends the loop when called.
_WORKER = """
import asyncio, signal, sys
from pathlib import Path
from handlers.stopping import STOPPED, Stopping
from handlers.workdirs import JobDirs

dirs = JobDirs.claim(Path(sys.argv[1]))
stopping = Stopping(dirs.remove)
stopping.install()

async def job():
    with stopping.job():
        try:
            with dirs.job_dir() as folder:
                (folder / "part").write_text("x")
                print(folder, flush=True)
                await asyncio.sleep(600)
        except asyncio.CancelledError:
            if not stopping.cancelled():
                raise
            print("answer:", STOPPED, flush=True)

async def serve():
    done = asyncio.Event()
    if sys.argv[2] == "sdk":
        loop = asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, lambda *_: loop.call_soon_threadsafe(done.set))
    task = asyncio.create_task(job())
    await done.wait() if sys.argv[2] == "sdk" else task
    await task
    print("sdk: stopped", flush=True)

asyncio.run(serve())
"""


def start(parent: Path, mode: str) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(parent), mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    folder = Path(proc.stdout.readline().strip())  # blocks until the job has its folder
    assert folder.is_dir(), proc.communicate()
    return proc, folder


def test_sigterm_behind_the_sdks_handler_stops_the_job_and_reaches_the_sdk(tmp_path: Path) -> None:
    proc, folder = start(tmp_path, "sdk")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0  # the SDK's own handler ran: its loop ended, the process exited
    assert out.splitlines() == [
        "answer: the worker was stopped (SIGTERM) before this job ended; nothing was kept of "
        "it: run the job again",
        "sdk: stopped",
    ]
    assert not folder.exists() and list(tmp_path.iterdir()) == []


def test_sigterm_with_no_other_handler_ends_the_process_by_the_signal(tmp_path: Path) -> None:
    proc, folder = start(tmp_path, "alone")  # the SDK's one-job mode installs no handler
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert not folder.exists() and list(tmp_path.iterdir()) == []
