#!/usr/bin/env python3
"""Run a handler's example jobs through the RunPod SDK's local API server and print results.

    python3 scripts/run_examples.py storage [--port 8000]

Starts `python3 handler.py --rp_serve_api` with HANDLER_TYPE set (the bootstrap installs or
finds the handler's env first), waits for it to answer, POSTs each example to /runsync,
prints what came back, and stops the server. Exit status 1 if any example returned an error.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 1800  # a cold start installs the handler's stack first


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, server: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the worker exited with status {server.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{url}/docs", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise SystemExit(f"the worker did not answer on {url} within {timeout_s:.0f} s")


def runsync(url: str, job_input: object) -> dict[str, object]:
    body = json.dumps({"input": job_input}).encode()
    request = urllib.request.Request(
        f"{url}/runsync", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("handler")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import handlers

    examples = handlers.load(args.handler).examples
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HANDLER_TYPE": args.handler}
    server = subprocess.Popen(
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
        env=env,
    )
    failed = 0
    try:
        wait_until_up(url, server, START_TIMEOUT_S)
        for example in examples:
            result = runsync(url, example)
            output = result.get("output")
            if result.get("status") != "COMPLETED" or (
                isinstance(output, dict) and "error" in output
            ):
                failed += 1
            print(json.dumps({"input": example, "result": result}, indent=2))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"{len(examples) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
