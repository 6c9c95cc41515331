"""A TCP proxy that delays every byte by a fixed time, in each direction.

The kernel on the test machines has no ``netem`` qdisc, so the MooseFS fixture
(:mod:`tests.support.moosefs`) adds network latency with this userspace proxy
instead.  Each accepted connection gets an upstream connection and, per
direction, a reader thread and a writer thread joined by a pipe and a queue:
the reader splices what the socket has into the pipe (never blocking in the
splice: see ``_Link._read``) and queues how many bytes and when they arrived;
the writer splices them on to the other socket once ``one_way_ms`` has passed
since then.  The bytes stay in the kernel (``splice(2)``).  That did not make
the proxy cheaper, measured: about 1 CPU second per audio start at 1 ms, as
when it copied them through Python; strace puts it in futex calls: its threads
waking per chunk (four per connection, and the MooseFS client opens many).
The fixture's CPU is reported beside every figure it serves
(bench/bench_volume.py).  Order is kept, throughput is not limited (but for
``_PIPE_BYTES`` in flight per direction), and half-closes travel through.

It runs as its own process (``python3 delay_proxy.py ...``), so the test
process's work does not hold up its threads.  The process is started inside
the *upstream* network namespace (where the servers are); its listening
sockets are created in another one (``--listen-netns``, where the clients
are), by switching the main thread's namespace for just that moment: a socket
stays in the namespace it was created in.  So the clients connect to the
servers' own address and find the proxy there.

Only the standard library is used, and nothing from this repository, so the
file can be run by path by any Python 3.10+ on Linux.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Forward", "main", "parse_forward", "serve"]

_CLONE_NEWNET = 0x40000000
_PR_SET_TIMERSLACK = 29
_PIPE_BYTES = 4 << 20  # in flight per direction: 1 ms at 32 Gbit/s
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_ACCEPT_BACKLOG = 128


class Delay:
    """The one-way delay every link reads per chunk; changed at run time by SIGUSR1."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


@dataclass(frozen=True)
class Forward:
    """Listen on ``listen`` and relay each connection to ``target`` (host, port)."""

    listen: tuple[str, int]
    target: tuple[str, int]


def parse_forward(text: str) -> Forward:
    """Parse ``LISTEN_IP:PORT=TARGET_IP:PORT`` into a :class:`Forward`."""
    try:
        left, right = text.split("=")
        return Forward(_parse_address(left), _parse_address(right))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"forward {text[:60]!r} is not LISTEN_IP:PORT=TARGET_IP:PORT"
        ) from None


def _parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(text)
    return host, int(port)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def _tight_timers() -> None:
    """Ask for 1 ns timer slack: the default 50 us would blur sub-ms delays."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


def _listeners(forwards: Sequence[Forward], listen_netns: str | None) -> list[socket.socket]:
    """Bind one listening socket per forward, in ``listen_netns`` if given."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY) if listen_netns else -1
    try:
        if listen_netns:
            target = os.open(listen_netns, os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
        sockets = []
        for forward in forwards:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(forward.listen)
            sock.listen(_ACCEPT_BACKLOG)
            sockets.append(sock)
        return sockets
    finally:
        if home >= 0:
            _setns(home)  # upstream connections are made from the home namespace
            os.close(home)


class _Link:
    """One proxied connection: two sockets, and per direction a pipe and two threads."""

    def __init__(self, client: socket.socket, upstream: socket.socket, delay: Delay) -> None:
        self._client = client
        self._upstream = upstream
        self._delay = delay
        self._lock = threading.Lock()
        self._open_directions = 2

    def start(self) -> None:
        for src, dst in ((self._client, self._upstream), (self._upstream, self._client)):
            pipe = os.pipe()
            with contextlib.suppress(OSError):  # a smaller pipe only limits what is in flight
                fcntl.fcntl(pipe[1], _F_SETPIPE_SZ, _PIPE_BYTES)
            arrivals: queue.SimpleQueue[tuple[float, int]] = queue.SimpleQueue()
            threading.Thread(target=self._read, args=(src, pipe[1], arrivals), daemon=True).start()
            threading.Thread(target=self._write, args=(pipe[0], dst, arrivals), daemon=True).start()

    def _read(
        self, src: socket.socket, pipe: int, arrivals: queue.SimpleQueue[tuple[float, int]]
    ) -> None:
        # Linux holds the pipe's lock for as long as a splice into it waits for the socket, so
        # a blocking one would keep the writer from draining the pipe: wait with poll, then
        # splice what is there without blocking.
        readable, room = select.poll(), select.poll()
        readable.register(src, select.POLLIN)
        room.register(pipe, select.POLLOUT)
        try:
            while True:
                readable.poll()
                try:
                    moved = os.splice(src.fileno(), pipe, _PIPE_BYTES, flags=os.SPLICE_F_NONBLOCK)
                except BlockingIOError:  # the pipe is full (or the wake-up was spurious)
                    room.poll()
                    continue
                arrivals.put((time.monotonic() + self._delay.seconds, moved))
                if not moved:
                    break
        except OSError:
            arrivals.put((0.0, -1))
            self._abort()
        os.close(pipe)

    def _write(
        self, pipe: int, dst: socket.socket, arrivals: queue.SimpleQueue[tuple[float, int]]
    ) -> None:
        try:
            while True:
                due, size = arrivals.get()
                if size < 0:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not size:
                    dst.shutdown(socket.SHUT_WR)
                    break
                while size:
                    size -= os.splice(pipe, dst.fileno(), size)
        except OSError:
            self._abort()
        os.close(pipe)
        with self._lock:
            self._open_directions -= 1
            done = self._open_directions == 0
        if done:
            self._close()

    def _abort(self) -> None:
        """A reset on either side: wake every thread of this link and end it."""
        for sock in (self._client, self._upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _close(self) -> None:
        for sock in (self._client, self._upstream):
            with contextlib.suppress(OSError):
                sock.close()


def _accept_loop(listener: socket.socket, target: tuple[str, int], delay: Delay) -> None:
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(target, timeout=10)
        except OSError as exc:
            print(f"delay_proxy: cannot connect to {target[0]}:{target[1]}: {exc}", file=sys.stderr)
            client.close()
            continue
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _Link(client, upstream, delay).start()


def serve(
    forwards: Sequence[Forward],
    *,
    one_way_ms: float,
    listen_netns: str | None = None,
    ready_file: str | None = None,
    delay_file: str | None = None,
) -> None:
    """Run the proxy until the process is signalled; never returns normally.

    ``ready_file`` is created (atomically) once every listener is bound. With ``delay_file``,
    SIGUSR1 makes the proxy read a new one-way delay (ms) from it, for every link at once, and
    write what it applied to ``<delay_file>.applied``.
    """
    _tight_timers()
    # Threads blocked in I/O release the GIL; a short switch interval keeps a
    # busy thread from holding the others up for the default 5 ms.
    sys.setswitchinterval(0.0002)
    listeners = _listeners(forwards, listen_netns)
    delay = Delay(one_way_ms / 1000.0)
    if delay_file:
        signal.signal(signal.SIGUSR1, lambda *_: _reload(delay, delay_file))
    for listener, forward in zip(listeners, forwards, strict=True):
        threading.Thread(
            target=_accept_loop,
            args=(listener, forward.target, delay),
            daemon=True,
        ).start()
    if ready_file:
        partial = f"{ready_file}.partial"
        with open(partial, "w", encoding="utf-8") as out:
            out.write(f"{os.getpid()}\n")
        os.replace(partial, ready_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


def _reload(delay: Delay, delay_file: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        with open(delay_file, encoding="utf-8") as src:
            one_way_ms = float(src.read())
        if one_way_ms >= 0:
            delay.seconds = one_way_ms / 1000.0
        partial = f"{delay_file}.applied.partial"
        with open(partial, "w", encoding="utf-8") as out:
            out.write(repr(delay.seconds * 1000.0))
        os.replace(partial, f"{delay_file}.applied")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``delay_proxy.py --one-way-ms MS --forward A:P=B:Q ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-way-ms", type=float, required=True)
    parser.add_argument("--forward", type=parse_forward, action="append", required=True)
    parser.add_argument("--listen-netns", help="network namespace file for the listeners")
    parser.add_argument("--ready-file", help="created once listening")
    parser.add_argument("--delay-file", help="SIGUSR1 re-reads the one-way delay (ms) from it")
    args = parser.parse_args(argv)
    if args.one_way_ms < 0:
        parser.error(f"--one-way-ms {args.one_way_ms} must be 0 or more")
    serve(
        args.forward,
        one_way_ms=args.one_way_ms,
        listen_netns=args.listen_netns,
        ready_file=args.ready_file,
        delay_file=args.delay_file,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
