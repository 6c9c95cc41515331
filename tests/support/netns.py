"""Jobs run inside a network namespace the test makes, against listeners it owns.

    unshare -n python -m tests.support.netns SCENARIO VOLUME

`run_in_namespace` starts this module under `unshare -n` (a new, empty network namespace: no
route to anything outside it). Inside, it brings up loopback and puts
PUBLIC on it (an address that is global on the internet, but here belongs to this namespace only,
so a connection to it reaches our own listener), then starts three HTTP listeners:

- PUBLIC:PORT      the "public" server: serves /file, and /hop redirects to another name;
- 127.0.0.1:PORT   a private server that must never be reached (it counts requests);
- 169.254.169.254:80, the cloud metadata address, likewise counted.

The machine's resolver is replaced in this process by a rebinding one (socket.getaddrinfo is
the boundary: both the checking code and urllib/botocore call it): a name under `.rebind.test`
answers PUBLIC the first time and 127.0.0.1 every time after. The scenario's jobs run through
handler.py's adapter, and a JSON report is printed: every job's result and the hits each
private listener saw.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

PUBLIC = "93.184.216.34"
METADATA = "169.254.169.254"
PORT = 8080
PUBLIC_BODY = b"public bytes\n" * 10
PRIVATE_BODY = b"PRIVATE: the worker's private side\n"


def run_in_namespace(scenario: str, volume: Path, timeout_s: float = 120) -> dict[str, Any]:
    """Run SCENARIO in a new network namespace; its JSON report."""
    from handlers.harness import REPO

    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("unshare (util-linux) is needed for the network namespace tests")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "BUCKET_"))}
    proc = subprocess.run(
        [unshare, "-n", sys.executable, "-m", "tests.support.netns", scenario, str(volume)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the namespace run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    report["stderr"] = proc.stderr
    return report


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: list[str]
    body: bytes = PRIVATE_BODY

    def _answer(self) -> None:
        self.hits.append(f"{self.command} {self.path}")
        if self.path.startswith("/hop"):
            self.send_response(302)
            self.send_header("Location", f"http://second.rebind.test:{PORT}/file")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_PUT = do_HEAD = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def _listen(address: str, port: int, body: bytes) -> list[str]:
    hits: list[str] = []
    handler = type("Handler", (_Counter,), {"hits": hits, "body": body})
    server = http.server.ThreadingHTTPServer((address, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return hits


def _network() -> None:
    for command in (
        ["ip", "link", "set", "lo", "up"],
        # This namespace's own loopback device holds both: nothing leaves the namespace.
        ["ip", "addr", "add", f"{PUBLIC}/32", "dev", "lo"],
        ["ip", "addr", "add", f"{METADATA}/32", "dev", "lo"],
    ):
        subprocess.run(command, check=True)


def _rebinding_resolver() -> None:
    real = socket.getaddrinfo
    seen: dict[str, int] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".rebind.test"):
            seen[name] = seen.get(name, 0) + 1
            answer = PUBLIC if seen[name] == 1 or name.startswith("steady.") else "127.0.0.1"
            return real(answer, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def _jobs(scenario: str) -> list[dict[str, Any]]:
    creds = {"access_key_id": "AKIDCANARY", "secret_access_key": "SECRETCANARY-0123456789"}
    if scenario == "rebind":
        return [
            {
                "action": "copy",
                "source": f"http://first.rebind.test:{PORT}/file",
                "destination": "volume://direct.bin",
            },
            {
                "action": "copy",
                "source": f"http://steady.rebind.test:{PORT}/hop",
                "destination": "volume://redirected.bin",
            },
        ]
    if scenario == "endpoint":
        return [
            {
                "action": "presign",
                "source": "s3://bucket/key",
                "credentials": {**creds, "endpoint_url": f"http://{METADATA}"},
            },
            {
                "action": "copy",
                "source_base64": "aGVsbG8=",
                "destination": "s3://bucket/key",
                "credentials": {**creds, "endpoint_url": f"http://127.0.0.1:{PORT}"},
            },
            {
                "action": "copy",
                "source_base64": "aGVsbG8=",
                "destination": "s3://bucket/key",
                "credentials": {**creds, "endpoint_url": f"http://s3.rebind.test:{PORT}"},
            },
            {
                "action": "stat",
                "source": "s3://bucket/key",
                "credentials": {**creds, "endpoint_url": "http://[::ffff:127.0.0.1]:8080"},
            },
        ]
    raise SystemExit(f"unknown scenario {scenario!r}")


def main(scenario: str, volume: str) -> None:
    _network()
    hits = {
        "public": _listen(PUBLIC, PORT, PUBLIC_BODY),
        "loopback": _listen("127.0.0.1", PORT, PRIVATE_BODY),
        "metadata": _listen(METADATA, 80, PRIVATE_BODY),
    }
    _rebinding_resolver()
    from handler import adapt
    from handlers.config import load_config
    from handlers.storage import StorageHandler

    handler = StorageHandler(load_config({"RUNPOD_SLIM_VOLUME": volume}))
    job = adapt(handler, lambda job, message: None)
    results = [asyncio.run(job({"id": "ns", "input": body})) for body in _jobs(scenario)]
    files = {
        name: (Path(volume) / name).read_bytes().decode(errors="replace")
        for name in ("direct.bin", "redirected.bin")
        if (Path(volume) / name).exists()
    }
    print(json.dumps({"results": results, "hits": hits, "files": files}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
