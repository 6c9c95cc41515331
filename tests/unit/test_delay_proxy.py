"""tests/support/delay_proxy.py on loopback: bytes intact and in order, delayed, half-closed."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support import delay_proxy

ONE_WAY_S = 0.002


@pytest.fixture
def proxied() -> Iterator[socket.socket]:
    """A client socket connected through the proxy to an echo server, all on loopback."""
    server = socket.create_server(("127.0.0.1", 0))
    listener = socket.create_server(("127.0.0.1", 0))

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1 << 20):
                conn.sendall(data)
            # The client's half-close arrived: answer with one of our own.

    def serve() -> None:
        with contextlib.suppress(OSError):  # the server is closed at the end
            while True:
                threading.Thread(target=echo, args=(server.accept()[0],), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    relay = delay_proxy.Relay(delay_proxy.Delay(ONE_WAY_S))
    relay.listen(listener, server.getsockname())
    loop = threading.Thread(target=relay.run, daemon=True)
    loop.start()
    client = socket.create_connection(listener.getsockname(), timeout=30)
    try:
        yield client
    finally:
        relay.stop()
        loop.join(timeout=30)
        assert not loop.is_alive()
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


def test_slow_readers_on_many_connections_get_every_byte(proxied: socket.socket) -> None:
    """Readers slower than the proxy fill its pipes and their sockets: it must wait, not drop."""
    listener_address = proxied.getpeername()
    data = [os.urandom(3 << 20) for _ in range(4)]
    clients = [socket.create_connection(listener_address, timeout=30) for _ in data]
    clients.append(proxied)
    data.append(os.urandom(1 << 20))  # the fixture's connection, one more at once
    got = [bytearray() for _ in clients]

    def send(sock: socket.socket, payload: bytes) -> None:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)

    def read_slowly(sock: socket.socket, into: bytearray) -> None:
        while chunk := sock.recv(4096):
            into += chunk

    threads = [
        threading.Thread(target=fn, args=args)
        for sock, payload, into in zip(clients, data, got, strict=True)
        for fn, args in ((send, (sock, payload)), (read_slowly, (sock, into)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [bytes(g) == d for g, d in zip(got, data, strict=True)] == [True] * len(data)
    for sock in clients[:-1]:
        sock.close()


def test_a_reset_upstream_ends_its_connection_and_the_proxy_serves_on() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    listener = socket.create_server(("127.0.0.1", 0))
    relay = delay_proxy.Relay(delay_proxy.Delay(ONE_WAY_S))
    relay.listen(listener, server.getsockname())
    loop = threading.Thread(target=relay.run, daemon=True)
    loop.start()
    try:
        first = socket.create_connection(listener.getsockname(), timeout=30)
        conn, _ = server.accept()
        # Close with a reset (linger 0) rather than a FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        with contextlib.suppress(ConnectionResetError):  # an end, either way; not a hang
            assert first.recv(100) == b""
        first.close()
        second = socket.create_connection(listener.getsockname(), timeout=30)
        conn, _ = server.accept()
        second.sendall(b"still here")
        assert conn.recv(100) == b"still here"
        for sock in (second, conn):
            sock.close()
    finally:
        relay.stop()
        loop.join(timeout=30)
        for sock in (listener, server):
            sock.close()
