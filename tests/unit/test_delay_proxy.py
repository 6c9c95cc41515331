"""tests/support/delay_proxy.py on loopback: bytes intact and in order, delayed, half-closed."""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support import delay_proxy

ONE_WAY_S = 0.002


@pytest.fixture
def proxied() -> Iterator[socket.socket]:
    """A client socket connected through the proxy to an echo server, both on loopback."""
    server = socket.create_server(("127.0.0.1", 0))
    listener = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1 << 20):
                conn.sendall(data)
            # The client's half-close arrived: answer with one of our own.

    threading.Thread(target=echo, daemon=True).start()
    threading.Thread(
        target=delay_proxy._accept_loop,
        args=(listener, server.getsockname(), delay_proxy.Delay(ONE_WAY_S)),
        daemon=True,
    ).start()
    client = socket.create_connection(listener.getsockname(), timeout=30)
    try:
        yield client
    finally:
        for sock in (client, listener, server):
            sock.close()


def test_bytes_come_back_intact_in_order_and_the_half_close_travels(
    proxied: socket.socket,
) -> None:
    data = os.urandom(24 << 20)  # several times the pipe

    def send() -> None:
        proxied.sendall(data)
        proxied.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send)
    sender.start()
    got = bytearray()
    while chunk := proxied.recv(1 << 20):  # ends at the echo server's close: EOF came through
        got += chunk
    sender.join()
    assert bytes(got) == data


def test_each_round_trip_takes_the_delay_both_ways(proxied: socket.socket) -> None:
    times = []
    for n in range(30):
        began = time.perf_counter()
        proxied.sendall(b"ping %d" % n)
        assert proxied.recv(100) == b"ping %d" % n
        times.append(time.perf_counter() - began)
    # Through the proxy to the server, and through it again on the way back.
    assert min(times) >= 2 * ONE_WAY_S
    assert statistics.median(times) < 2 * ONE_WAY_S + 0.05  # and not far beyond, here
