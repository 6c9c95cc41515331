"""A loopback server that accepts connections and never answers: a stalled package index.

It stands in for an index behind a broken proxy or an overloaded mirror, which cannot be
arranged on purpose from here. Connections are held open, unread, until the server closes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class StalledServer:
    """Listens on 127.0.0.1; counts the connections it accepts and never answers any."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        return len(self._held)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._held.append(conn)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join()
        for conn in self._held:
            conn.close()


@contextlib.contextmanager
def stalled_server() -> Iterator[StalledServer]:
    server = StalledServer()
    try:
        yield server
    finally:
        server.close()
