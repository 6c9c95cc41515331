"""A real HTTP server on 127.0.0.1 serving a directory, for download tests.

It stands in for GitHub's release downloads and for a wheel mirror, which cannot be reached
from here. It can be told to answer 503 to the next N requests, to test retries.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.server.fail_next > 0:
            self.server.fail_next -= 1
            self.send_error(503, "try again")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest's output clean


class _Server(http.server.ThreadingHTTPServer):
    requests: list[str]
    fail_next: int


class FileServer:
    """Serves `root` at `url` until closed."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_Handler, directory=str(root))
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.requests = []
        self._server.fail_next = 0
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[str]:
        return self._server.requests

    def fail_next(self, count: int) -> None:
        self._server.fail_next = count

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextlib.contextmanager
def serve(root: Path) -> Iterator[FileServer]:
    server = FileServer(root)
    try:
        yield server
    finally:
        server.close()


def closed_port_url() -> str:
    """An http URL on a local port nobody listens on: connections are refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
