"""A TCP proxy that delays every byte by a fixed time, in each direction.

The kernel on the test machines has no ``netem`` qdisc, so the MooseFS fixture
(:mod:`tests.support.moosefs`) adds network latency with this userspace proxy
instead.  One thread runs one ``epoll`` loop for every connection: what a
socket has is spliced into a pipe per direction (``splice(2)``: the bytes stay
in the kernel) and queued with the time it is due, one delay after it
arrived; a ``timerfd`` wakes the loop at the next due time, and the bytes are
spliced on to the other socket.  The machine's two cores are shared with the
volume's servers and the worker being measured, so what the proxy spends is
taken from them.  Per warm audio start at 1 ms it spends 0.7-0.85 CPU seconds,
about half of it in the kernel (splice, TCP); an earlier version, with two
threads per direction, spent 0.85-1.0 (scratch runs, 2026-12-01), and ran with
64 KiB pipes where it meant 4 MiB (see ``_PIPE_BYTES``).  The fixture's CPU is
reported beside every figure it serves (bench/bench_volume.py).  Order is kept,
throughput is not limited (but for the pipe's size in flight per direction),
and half-closes travel through.

It runs as its own process (``python3 delay_proxy.py ...``), so the test
process's work does not hold up its loop.  The process is started inside
the *upstream* network namespace (where the servers are); its listening
sockets are created in another one (``--listen-netns``, where the clients
are), by switching the thread's namespace for just that moment: a socket
stays in the namespace it was created in.  So the clients connect to the
servers' own address and find the proxy there.

Only the standard library is used, and nothing from this repository, so the
file can be run by path by any Python 3.10+ on Linux.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import fcntl
import functools
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Delay", "Forward", "Relay", "main", "parse_forward", "serve"]

_CLONE_NEWNET = 0x40000000
_PR_SET_TIMERSLACK = 29
# In flight per direction: 1 ms at 32 Gbit/s. Without CAP_SYS_RESOURCE a pipe may not grow
# beyond /proc/sys/fs/pipe-max-size (1 MiB by default, 1 ms at 8 Gbit/s); a default pipe
# (64 KiB, 16 buffers) would hold throughput down and split it into many small splices.
_PIPE_BYTES = 4 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_ACCEPT_BACKLOG = 128
_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_SPLICE_FLAGS = os.SPLICE_F_NONBLOCK | os.SPLICE_F_MOVE


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


class _Timer:
    """A ``timerfd`` on the monotonic clock (``time.monotonic``), set to absolute times.

    ``epoll``'s own timeout counts whole milliseconds, too coarse for sub-ms delays.
    """

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_create: {os.strerror(errno)}")
        self.due = 0.0  # 0: not set

    def set(self, due: float) -> None:
        if due == self.due:
            return
        seconds = int(due)
        value = _Itimerspec(_Timespec(0, 0), _Timespec(seconds, int((due - seconds) * 1e9)))
        if self._libc.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(value), None):
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_settime: {os.strerror(errno)}")
        self.due = due

    def fired(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)
        self.due = 0.0


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Flow:
    """One direction of a connection: what ``src`` sent, in a pipe, until it is due at ``dst``."""

    def __init__(self, link: _Link, src: socket.socket, dst: socket.socket) -> None:
        self.link = link
        self.src = src
        self.dst = dst
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _grow(self.pipe_w)
        self.queue: collections.deque[list[float]] = collections.deque()  # [due, bytes]
        self.reading = True  # False while the pipe is full, and after the end
        self.blocked = False  # dst's buffer is full: wait until it is writable
        self.done = False

    def read(self, delay: float) -> None:
        """Move what ``src`` has into the pipe (one splice: epoll said it has something)."""
        try:
            moved = os.splice(self.src.fileno(), self.pipe_w, _PIPE_BYTES, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            # src had bytes, so the pipe is full: read again once a chunk has gone on. (Not on
            # a spurious wake-up with nothing queued: nothing would turn reading on again.)
            self.reading = not self.queue
            return
        self.queue.append([time.monotonic() + delay, moved])
        if not moved:  # the end of what src sends
            self.reading = False

    def write(self, now: float) -> None:
        """Send on what is due by ``now``, as far as ``dst`` takes it."""
        while self.queue and self.queue[0][0] <= now:
            head = self.queue[0]
            if not head[1]:
                self.dst.shutdown(socket.SHUT_WR)
                self.queue.popleft()
                self.done = True
                return
            try:
                head[1] -= os.splice(
                    self.pipe_r, self.dst.fileno(), int(head[1]), flags=_SPLICE_FLAGS
                )
            except BlockingIOError:
                self.blocked = True
                return
            if head[1]:
                self.blocked = True
                return
            self.queue.popleft()
            if not self.reading and not self.done and (not self.queue or self.queue[-1][1]):
                self.reading = True  # the pipe has room again (an ended src is never read)

    def close(self) -> None:
        for fd in (self.pipe_r, self.pipe_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _grow(pipe: int) -> None:
    """Make the pipe as large as allowed, up to _PIPE_BYTES."""
    for size in dict.fromkeys((_PIPE_BYTES, min(_PIPE_BYTES, _pipe_max_size()))):
        with contextlib.suppress(OSError):  # a smaller pipe only limits what is in flight
            fcntl.fcntl(pipe, _F_SETPIPE_SZ, size)
            return


@functools.cache
def _pipe_max_size() -> int:
    """The largest pipe a process without CAP_SYS_RESOURCE may have (read once)."""
    try:
        with open("/proc/sys/fs/pipe-max-size", encoding="ascii") as limit:
            return int(limit.read())
    except (OSError, ValueError):
        return 1 << 20


class _Link:
    """One proxied connection: the client's socket, the upstream one, and a flow each way."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self.flows = (_Flow(self, client, upstream), _Flow(self, upstream, client))
        self.closed = False

    def flows_of(self, sock: socket.socket) -> tuple[_Flow, _Flow]:
        """(the flow that reads ``sock``, the flow that writes to it)."""
        return self.flows if sock is self.sockets[0] else (self.flows[1], self.flows[0])

    def mask(self, sock: socket.socket) -> int:
        """What to wait for on ``sock``: bytes to read from it, room to write to it."""
        outgoing, incoming = self.flows_of(sock)
        mask = select.EPOLLIN if outgoing.reading else 0
        return mask | (select.EPOLLOUT if incoming.blocked else 0)


class Relay:
    """The proxy's loop: every listener and connection, on the thread that calls run()."""

    def __init__(self, delay: Delay) -> None:
        self.delay = delay
        self._epoll = select.epoll()
        self._timer = _Timer()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._listeners: dict[int, tuple[socket.socket, tuple[str, int]]] = {}
        self._sockets: dict[int, tuple[_Link, socket.socket]] = {}
        self._masks: dict[int, int] = {}
        self._waiting: set[_Flow] = set()  # flows with bytes queued
        self._closed: list[_Link] = []  # their descriptors are closed after each batch of events
        self._stopped = False
        self._epoll.register(self._timer.fd, select.EPOLLIN)
        self._epoll.register(self._wake_r, select.EPOLLIN)

    def listen(self, listener: socket.socket, target: tuple[str, int]) -> None:
        """Relay each connection ``listener`` accepts to ``target``."""
        listener.setblocking(False)
        self._listeners[listener.fileno()] = (listener, target)
        self._epoll.register(listener, select.EPOLLIN)

    def stop(self) -> None:
        """End run() (from any thread); open connections are closed."""
        self._stopped = True
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def run(self) -> None:
        try:
            while not self._stopped:
                touched: set[_Link] = set()
                for fd, events in self._epoll.poll():
                    if fd in self._sockets:
                        link, sock = self._sockets[fd]
                        touched.add(link)
                        try:
                            self._ready(link, sock, events)
                        except OSError:  # a reset on either side ends the connection
                            self._close(link)
                    elif fd in self._listeners:
                        self._accept(*self._listeners[fd])
                    elif fd == self._timer.fd:
                        self._timer.fired()
                self._send_due(touched)
                for link in touched:
                    self._update(link)
                self._release()
        finally:
            for link, _sock in list(self._sockets.values()):
                self._close(link)
            self._release()
            self._epoll.close()
            wake, self._wake_w = self._wake_w, -1
            for fd in (self._timer.fd, self._wake_r, wake):
                os.close(fd)

    def _ready(self, link: _Link, sock: socket.socket, events: int) -> None:
        if events & select.EPOLLERR:
            raise ConnectionResetError
        outgoing, incoming = link.flows_of(sock)
        if events & select.EPOLLOUT and incoming.blocked:
            incoming.blocked = False
            self._waiting.add(incoming)
        if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and outgoing.reading:
            outgoing.read(self.delay.seconds)
            if outgoing.queue:
                self._waiting.add(outgoing)

    def _send_due(self, touched: set[_Link]) -> None:
        now = time.monotonic()
        for flow in list(self._waiting):
            if flow.link.closed:
                self._waiting.discard(flow)
                continue
            if flow.blocked or flow.queue[0][0] > now:
                continue
            touched.add(flow.link)
            try:
                flow.write(now)
            except OSError:
                self._close(flow.link)
                continue
            if not flow.queue:
                self._waiting.discard(flow)
        due = [flow.queue[0][0] for flow in self._waiting if not flow.blocked]
        if due:
            self._timer.set(min(due))

    def _update(self, link: _Link) -> None:
        """Close a finished connection; else wait on each socket for what its flows need."""
        if link.closed:
            return
        if all(flow.done for flow in link.flows):
            self._close(link)
            return
        for sock in link.sockets:
            mask = link.mask(sock)
            if mask != self._masks.get(sock.fileno()):
                self._epoll.modify(sock, mask)
                self._masks[sock.fileno()] = mask

    def _accept(self, listener: socket.socket, target: tuple[str, int]) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except BlockingIOError:
                return
            try:
                upstream = socket.create_connection(target, timeout=10)
            except OSError as exc:
                print(
                    f"delay_proxy: cannot connect to {target[0]}:{target[1]}: {exc}",
                    file=sys.stderr,
                )
                client.close()
                continue
            link = _Link(client, upstream)
            for sock in link.sockets:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sockets[sock.fileno()] = (link, sock)
                self._masks[sock.fileno()] = select.EPOLLIN
                self._epoll.register(sock, select.EPOLLIN)

    def _close(self, link: _Link) -> None:
        if link.closed:
            return
        link.closed = True
        for sock in link.sockets:
            self._sockets.pop(sock.fileno(), None)
            self._masks.pop(sock.fileno(), None)
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(sock)
        for flow in link.flows:
            self._waiting.discard(flow)
        # Closed later: a number closed now could be reused by a connection accepted in this
        # same batch, and a later event of the batch for the old one taken for the new one's.
        self._closed.append(link)

    def _release(self) -> None:
        for link in self._closed:
            for sock in link.sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            for flow in link.flows:
                flow.close()
        self._closed.clear()


def serve(
    forwards: Sequence[Forward],
    *,
    one_way_ms: float,
    listen_netns: str | None = None,
    ready_file: str | None = None,
    delay_file: str | None = None,
) -> None:
    """Run the proxy until the process gets SIGTERM or SIGINT.

    ``ready_file`` is created (atomically) once every listener is bound. With ``delay_file``,
    SIGUSR1 makes the proxy read a new one-way delay (ms) from it, for every link at once, and
    write what it applied to ``<delay_file>.applied``.
    """
    _tight_timers()
    listeners = _listeners(forwards, listen_netns)
    relay = Relay(Delay(one_way_ms / 1000.0))
    if delay_file:
        signal.signal(signal.SIGUSR1, lambda *_: _reload(relay.delay, delay_file))
    for listener, forward in zip(listeners, forwards, strict=True):
        relay.listen(listener, forward.target)
    if ready_file:
        partial = f"{ready_file}.partial"
        with open(partial, "w", encoding="utf-8") as out:
            out.write(f"{os.getpid()}\n")
        os.replace(partial, ready_file)
    signal.signal(signal.SIGTERM, lambda *_: relay.stop())
    signal.signal(signal.SIGINT, lambda *_: relay.stop())
    relay.run()


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
