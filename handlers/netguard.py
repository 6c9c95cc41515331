"""Connections a job asks for: to public addresses only, and to the very address checked.

Checking a host name and then letting a library connect by name resolves it twice, and a DNS
server that answers a public address first and 127.0.0.1 next (DNS rebinding) gets the second
connection into the worker's private side. So every connection a job causes (URL downloads,
their redirects, a job's own S3 endpoint) goes through a `Guard`:

- the host is resolved once (`RESOLVER`, the one seam: tests put a rebinding resolver there);
- every address is checked: not loopback, private, link-local (the metadata service at
  169.254.169.254), shared, reserved, multicast or unspecified, IPv4 inside IPv6 included,
  unless RUNPOD_SLIM_ALLOW_PRIVATE_URLS is set;
- the socket connects to an address from that answer, never resolving again; TLS still sends
  the host name (SNI) and checks the certificate against it.

A redirect is a new connection: it goes through the same guard (its own host, resolved once).
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from .errors import JobError

Resolver = Callable[[str, int], list[str]]  # (host, port) -> addresses, in preference order
# http.client sends a request's file body in blocks of this size (its default is 8 KiB: a
# 1 GB upload would take 131,072 small writes).
_BLOCK = 1 << 20
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def system_resolver(host: str, port: int) -> list[str]:
    """The machine's resolver (getaddrinfo), each address once, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


RESOLVER: Resolver = system_resolver


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a job may connect to `address`: a global unicast address, embedded v4 too."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        )
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not (address.is_multicast or address.is_unspecified)


class Guard:
    """Resolves, checks and connects for one job's URL (and its redirects)."""

    def __init__(self, field: str, shown: str, allow_private: bool) -> None:
        self.field = field
        self.shown = shown  # the URL as errors may show it (no query, no userinfo)
        self.allow_private = allow_private
        self._answers: dict[tuple[str, int], list[str]] = {}
        self._lock = threading.Lock()
        self.sockets: list[socket.socket] = []  # every socket made: the caller may cut them

    def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses of host, resolved once per guard and kept."""
        key = (host.strip("[]").lower(), port)
        with self._lock:
            if key in self._answers:
                return self._answers[key]
        found = self._resolve(*key)
        with self._lock:
            return self._answers.setdefault(key, found)

    def _resolve(self, host: str, port: int) -> list[str]:
        if not host:
            raise JobError(f"{self.field}={self.shown} has no host name")
        try:
            literal = ipaddress.ip_address(host.split("%", 1)[0])
            found = [str(literal)]
        except ValueError:
            try:
                found = RESOLVER(host, port)
            except (OSError, UnicodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not a valid host name"
                raise JobError(
                    f"{self.field}={self.shown}: cannot resolve host {host[:80]!r} ({reason})"
                ) from None
        if not found:
            raise JobError(f"{self.field}={self.shown}: host {host[:80]!r} has no address")
        if not self.allow_private:
            for text in found:
                address = ipaddress.ip_address(text.split("%", 1)[0])
                if not is_public(address):
                    raise JobError(
                        f"{self.field}={self.shown} points to a private or local address "
                        f"({address}); refused. Set RUNPOD_SLIM_ALLOW_PRIVATE_URLS=1 to allow it"
                    )
        return found

    def connect(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP socket to one of host's checked addresses (never resolved again)."""
        last: OSError | None = None
        for address in self.addresses(host, port):
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect((address, port))
            except OSError as exc:
                sock.close()
                last = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sockets.append(sock)
            return sock
        assert last is not None
        raise last

    def set_timeout(self, seconds: float) -> None:
        """Each open socket's next read or write waits at most `seconds` (the job's time left)."""
        for sock in self.sockets:
            if sock.fileno() >= 0:  # earlier hops' sockets are closed
                sock.settimeout(seconds)

    def close(self) -> None:
        """Close every socket this guard made (a transfer that ended, or was cut off)."""
        for sock in self.sockets:
            sock.close()


class _GuardedConnect:
    """http.client connects through `_create_connection`: here, the guard's checked socket."""

    _guard: Guard
    _create_connection: Any

    def _connect_through(self, guard: Guard) -> None:
        self._guard = guard
        self._create_connection = self._pinned

    def _pinned(self, address: tuple[str, int], timeout: Any, source: Any = None) -> socket.socket:
        return self._guard.connect(address[0], address[1], _seconds(timeout))


class _PinnedHTTPConnection(_GuardedConnect, http.client.HTTPConnection):
    def __init__(self, host: str, *, guard: Guard, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._connect_through(guard)


class _PinnedHTTPSConnection(_GuardedConnect, http.client.HTTPSConnection):
    # HTTPSConnection.connect() calls HTTPConnection.connect() (the guard's socket), then
    # wraps it with server_hostname=self.host: SNI and certificate checks use the name.
    def __init__(self, host: str, *, guard: Guard, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._connect_through(guard)


def _seconds(timeout: Any) -> float | None:
    return timeout if isinstance(timeout, int | float) else None


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, guard: Guard) -> None:
        super().__init__()
        self.guard = guard

    def http_open(self, req: Any) -> Any:
        return self.do_open(
            functools.partial(_PinnedHTTPConnection, guard=self.guard, blocksize=_BLOCK), req
        )


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, guard: Guard) -> None:
        super().__init__(context=ssl.create_default_context())  # honours SSL_CERT_FILE
        self.guard = guard

    def https_open(self, req: Any) -> Any:
        return self.do_open(
            functools.partial(_PinnedHTTPSConnection, guard=self.guard, blocksize=_BLOCK),
            req,
            context=self._context,  # type: ignore[attr-defined]
        )


def opener(guard: Guard, *extra: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """A urllib opener whose every connection (redirects too) goes through `guard`.

    Proxies from the environment are not used: a proxy resolves the name itself, out of
    the guard's sight.
    """
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _HTTPHandler(guard), _HTTPSHandler(guard), *extra
    )


def pin_boto3_client(client: Any, guard: Guard) -> None:
    """Make a boto3 client connect through `guard` (its endpoint resolved once and checked).

    botocore builds urllib3 pools from the classes in its session's
    `_pool_classes_by_scheme`; this client's session gets subclasses whose connections take
    their socket from the guard (TLS still checks the endpoint's name). A botocore without
    that attribute refuses job endpoints rather than connecting unchecked.
    """
    from botocore.awsrequest import AWSHTTPConnectionPool, AWSHTTPSConnectionPool

    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    pools = getattr(session, "_pool_classes_by_scheme", None)
    if not isinstance(pools, dict):
        raise JobError(
            "this worker's botocore cannot pin a job's own S3 endpoint to a checked address; "
            "use the endpoint's BUCKET_* settings instead of input.credentials.endpoint_url"
        )

    def new_conn(connection: Any) -> socket.socket:
        return guard.connect(connection._dns_host, connection.port, _seconds(connection.timeout))

    def pinned_pool(base: Any) -> type:
        conn: Any = type(f"Pinned{base.ConnectionCls.__name__}", (base.ConnectionCls,), {})
        conn._new_conn = new_conn
        return type(f"Pinned{base.__name__}", (base,), {"ConnectionCls": conn})

    pools["http"] = pinned_pool(AWSHTTPConnectionPool)
    pools["https"] = pinned_pool(AWSHTTPSConnectionPool)


def endpoint_host(url: str) -> tuple[str, int]:
    """The host and port a URL connects to (ValueError when its port is not a number)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port
