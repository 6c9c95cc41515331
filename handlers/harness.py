"""The local harness: the worker's local API server (`handler.py --rp_serve_api`), started on
a free loopback port and called. Used by scripts/run_examples.py and by the tests."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalApi:
    """A running local API server and the calls the tests make to it."""

    def __init__(self, url: str, process: subprocess.Popen[str], log: IO[str]) -> None:
        self.url = url
        self.process = process
        self._log = log

    def log(self) -> str:
        """Everything the worker has written to stdout and stderr so far."""
        self._log.flush()
        with open(self._log.name, encoding="utf-8", errors="replace") as text:
            return text.read()

    def post(self, path: str, body: Mapping[str, Any], timeout_s: float = 600) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def get(self, path: str, timeout_s: float = 60) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout_s) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def runsync(self, job_input: Mapping[str, Any]) -> dict[str, Any]:
        return self.post("/runsync", {"input": job_input})


def run_one_job(
    env: Mapping[str, str], job_input: Mapping[str, Any], timeout_s: float = 900
) -> tuple[int, str]:
    """`python3 handler.py --test_input` for one job: (exit status, the worker's whole log).

    The SDK's one-job mode exits 1 when the job reports an error, and logs the job's result as
    `Job result: {...}` when it does not.
    """
    proc = subprocess.run(
        [sys.executable, "handler.py", "--test_input", json.dumps({"input": job_input})],
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


@contextmanager
def local_api(
    env: Mapping[str, str], start_timeout_s: float = 900, port: int = 0
) -> Iterator[LocalApi]:
    """Start the worker's local API server; poll until it answers, with a deadline.

    A cold start installs the handler's stack first, hence the long default deadline.
    """
    port = port or free_port()
    # The worker's log goes to a file, not a pipe: a pipe nobody reads would fill and stall it.
    with tempfile.NamedTemporaryFile(mode="w+", prefix="runpod-slim-worker-log-") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "handler.py",
                "--rp_serve_api",
                "--rp_api_host",
                "127.0.0.1",
                "--rp_api_port",
                str(port),
            ],
            cwd=REPO,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(
                        f"the worker exited ({process.returncode}):\n{log.read()[-4000:]}"
                    )
                try:
                    with urllib.request.urlopen(f"{url}/docs", timeout=2):
                        break
                except (urllib.error.URLError, OSError):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the worker's API never answered on {url}") from None
                    time.sleep(0.1)
            yield LocalApi(url, process, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
