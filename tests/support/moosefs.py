"""A throwaway MooseFS cluster mounted at several client mount points.

RunPod's network volumes are MooseFS.  This module starts a real one (Debian's
MooseFS 3.0.117 packages, installed by ``scripts/install-test-deps.sh``):

* a master and one chunkserver in a network namespace of their own ("server"
  side), on a private ``10.x.y.1`` address, on a fresh data directory;
* ``clients`` FUSE mounts of it (``mfsmount``), each standing for one worker
  node, run in a second namespace ("client" side) joined to the first by a
  veth pair.  ``nsenter --net`` changes only the network namespace, so the
  mounts are visible to the whole machine;
* optionally, added round-trip latency between the clients and both servers:
  a userspace delaying proxy (:mod:`tests.support.delay_proxy`, as the kernel
  here has no ``netem``) listens in the client namespace on the servers' own
  address (put on the client namespace's loopback, which beats the veth
  route), and connects to the real servers from the server namespace.  The
  master tells clients the chunkserver's own address, so that is all the
  routing needed.

MooseFS refuses 127.x addresses, hence the namespaces: nothing is ever bound
or routed in the machine's own namespace.  Each instance has unique
namespace names and addresses (and the owner's pid in its names, so
:func:`cleanup_stale` can tell a dead run's leftovers from a live one's).

Typical use::

    with moosefs_cluster(tmp_path, latency_ms=1.0) as fs:
        (fs.mounts[0] / "a").write_bytes(b"x")
        assert (fs.mounts[1] / "a").read_bytes() == b"x"
        fs.master_ping_us(0)

Every daemon and mount is killed when the thread that started it exits
(``PR_SET_PDEATHSIG``), so a killed test run leaves no process behind; start
the cluster from a thread that lives as long as it is used (the main thread).
The dead mounts and namespaces such a run leaves are removed by
:func:`cleanup_stale`, which every new cluster runs first.

Costs seen here (2 busy cores): start 1.6 to 4.2 s, stop 2 to 3.5 s (most of
it the chunkserver's first space report and ``ip netns delete``); memory
about 200 MB for the master and 135 MB for the chunkserver when idle, growing
with files written (after 10,000 small files: master 460 MB, chunkserver
775 MB, falling as its open chunks are closed), 25-40 MB per mount, 15 MB for
the proxy.

Command line (benchmarks, manual checks)::

    python3 -m tests.support.moosefs up --latency-ms 1 --dir /tmp/mfs

Only the standard library is used, except for the pytest fixtures at the end,
which :file:`tests/integration/conftest.py` exposes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "REQUIRED_BINARIES",
    "MooseFS",
    "MooseFSError",
    "cleanup_stale",
    "drop_page_cache",
    "missing_binaries",
    "moosefs",
    "moosefs_cluster",
    "moosefs_factory",
    "parse_stats",
    "require_moosefs",
]

#: Executables that must be on ``PATH`` to start a cluster.
REQUIRED_BINARIES: tuple[str, ...] = (
    "mfsmaster",
    "mfschunkserver",
    "mfsmount",
    "ip",
    "nsenter",
    "umount",
)

_EMPTY_METADATA = Path("/var/lib/mfs/metadata.mfs.empty")
_DELAY_PROXY = Path(__file__).with_name("delay_proxy.py")
_MASTER_CS_PORT = 9420  # chunkservers -> master
_MASTER_CLIENT_PORT = 9421  # mounts -> master
_CS_CLIENT_PORT = 9422  # mounts -> chunkserver
_NAME_PREFIX = "mfst"
_STALE_MOUNT = re.compile(rf"/{_NAME_PREFIX}-(\d+)-[0-9a-z_-]+/mnt\d+$")
_STALE_NETNS = re.compile(rf"^{_NAME_PREFIX}(\d+)x[0-9a-z]+[sc]$")
_LOG_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1
_CLONE_NEWNET = 0x40000000

_serials = itertools.count(1)  # next() on it is atomic under the GIL


class MooseFSError(RuntimeError):
    """A MooseFS daemon, mount or namespace command failed."""


def missing_binaries() -> list[str]:
    """Names from :data:`REQUIRED_BINARIES` not on ``PATH``, plus the empty metadata file."""
    missing = [name for name in REQUIRED_BINARIES if shutil.which(name) is None]
    if not _EMPTY_METADATA.is_file():
        missing.append(str(_EMPTY_METADATA))
    return missing


def parse_stats(text: str) -> dict[str, float]:
    """Parse a mount's ``.stats`` file (``key: value`` or ``key: [value]`` lines).

    Lines whose value is not a number are left out.
    """
    stats: dict[str, float] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip().strip("[]").strip()
        with contextlib.suppress(ValueError):
            stats[key.strip()] = float(value)
    return stats


def drop_page_cache(*, sync: bool = True) -> bool:
    """Drop the kernel's page cache (and dentries/inodes); return whether it worked.

    Needs root and a writable ``/proc/sys``; in a container it usually fails,
    and then nothing happens.  ``sync`` first writes dirty pages out, so that
    they can be dropped too.
    """
    if sync:
        os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as out:
            out.write("3\n")
    except OSError:
        return False
    return True


# ------------------------------------------------------------- processes


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent thread exits.

    Keeps daemons and mounts from outliving a test run killed before its
    clean-up ran (its mounts are then dead; :func:`cleanup_stale` removes
    them).
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _run(argv: Sequence[str], *, timeout: float = 15.0, check: bool = True) -> str:
    """Run a short command; raise :class:`MooseFSError` with its stderr if it fails."""
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise MooseFSError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        raise MooseFSError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
        )
    return proc.stdout


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_process(
    proc: subprocess.Popen[bytes], timeout: float, *, first_signal: int = signal.SIGTERM
) -> None:
    """Signal the process group, then SIGKILL it if it is still there after ``timeout`` s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, first_signal)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _connect_in_netns(netns: Path, address: tuple[str, int], timeout: float) -> bool:
    """Whether a TCP connection to ``address`` from namespace ``netns`` succeeds.

    The socket is made by a short-lived thread that switched namespace
    (``setns`` changes only the calling thread's): a socket stays in the
    namespace it was created in.
    """
    result: list[bool] = []

    def probe() -> None:
        assert _LIBC is not None
        fd = os.open(netns, os.O_RDONLY)
        try:
            if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
                result.append(False)
                return
        finally:
            os.close(fd)
        try:
            with socket.create_connection(address, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(result and result[0])


# ---------------------------------------------------------------- mounts


@dataclass(frozen=True)
class _MountEntry:
    mount_point: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_table() -> list[_MountEntry]:
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as table:
        for line in table:
            fields = line.split()
            dash = fields.index("-")
            entries.append(
                _MountEntry(_unescape(fields[4]), fields[dash + 1], _unescape(fields[dash + 2]))
            )
    return entries


def _is_mounted(path: Path) -> bool:
    return any(entry.mount_point == str(path) for entry in _mount_table())


def _mounts_under(directory: Path) -> list[str]:
    prefix = f"{directory}/"
    return [e.mount_point for e in _mount_table() if e.mount_point.startswith(prefix)]


def cleanup_stale() -> list[str]:
    """Remove what killed runs left: dead mounts and network namespaces.

    Only this module's own leftovers whose owner process is gone are touched
    (their names carry the owner's pid).  Returns what was removed.
    """
    removed = []
    for entry in _mount_table():
        match = _STALE_MOUNT.search(entry.mount_point)
        if match and entry.source.startswith("mfs#") and not _pid_alive(int(match.group(1))):
            _run(["umount", "-l", entry.mount_point], check=False)
            removed.append(entry.mount_point)
    netns_dir = Path("/run/netns")
    if netns_dir.is_dir():
        for path in netns_dir.iterdir():
            match = _STALE_NETNS.match(path.name)
            if match and not _pid_alive(int(match.group(1))):
                _run(["ip", "netns", "delete", path.name], check=False)
                removed.append(f"netns {path.name}")
    return removed


# --------------------------------------------------------------- cluster


@dataclass(frozen=True)
class _Network:
    """Names and addresses of one instance's two namespaces."""

    server_ns: str
    client_ns: str
    server_ip: str
    client_ip: str

    @property
    def server_ns_path(self) -> Path:
        return Path("/run/netns") / self.server_ns

    @property
    def client_ns_path(self) -> Path:
        return Path("/run/netns") / self.client_ns


def _new_identity() -> tuple[str, _Network]:
    """A unique tag and network for a new instance.

    Addresses only need to differ within one instance (the namespaces are
    private), but they are drawn at random from 10.200.0.0/13 so that two
    instances' mounts (their source names the master's address) are easy to
    tell apart.
    """
    serial = next(_serials)
    tag = f"{os.getpid()}x{_base36(serial)}"
    block = random.randrange(1 << 17)  # a /30 out of 2**19 addresses
    base = (10 << 24) | (200 << 16) | (block << 2)
    return tag, _Network(
        server_ns=f"{_NAME_PREFIX}{tag}s",
        client_ns=f"{_NAME_PREFIX}{tag}c",
        server_ip=_ip(base + 1),
        client_ip=_ip(base + 2),
    )


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def _ip(value: int) -> str:
    return ".".join(str((value >> shift) & 255) for shift in (24, 16, 8, 0))


class MooseFS:
    """A running cluster and its client mounts; made by :func:`moosefs_cluster`."""

    def __init__(
        self,
        directory: Path,
        network: _Network,
        *,
        clients: int,
        latency_ms: float,
        via_proxy: bool,
        ready_timeout: float,
        stop_timeout: float,
    ) -> None:
        self.directory = directory
        self.latency_ms = latency_ms
        self.via_proxy = via_proxy
        self._net = network
        self._clients = clients
        self._ready_timeout = ready_timeout
        self._stop_timeout = stop_timeout
        self._servers: dict[str, subprocess.Popen[bytes]] = {}
        self._mount_procs: list[subprocess.Popen[bytes] | None] = [None] * clients
        self._retiring: list[subprocess.Popen[bytes]] = []
        self._mount_points = [directory / f"mnt{i}" for i in range(clients)]
        self._netns_made: list[str] = []
        self._owner_thread = threading.get_ident()

    # ------------------------------------------------------------ API

    @property
    def mounts(self) -> list[Path]:
        """The client mount points, one per simulated worker node."""
        return list(self._mount_points)

    @property
    def server_address(self) -> str:
        """The master's and chunkserver's address (inside their namespace)."""
        return self._net.server_ip

    @property
    def namespaces(self) -> tuple[str, str]:
        """Names of the (server, client) network namespaces."""
        return self._net.server_ns, self._net.client_ns

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running daemons and mounts (``master``, ``mount0``...)."""
        procs: dict[str, subprocess.Popen[bytes] | None] = dict(self._servers)
        procs.update({f"mount{i}": p for i, p in enumerate(self._mount_procs)})
        return {name: p.pid for name, p in procs.items() if p is not None and p.poll() is None}

    def remount(self, index: int) -> Path:
        """Unmount client ``index`` and mount it again: a new client, cold caches.

        The new mount has its own FUSE superblock, so nothing the kernel cached
        for the old one (pages, dentries) is reused: it reads as a new worker
        node would.  Returns the mount point (the same path).

        Call it from the thread that started the cluster: the new mfsmount is
        killed when the thread that started it exits (``PR_SET_PDEATHSIG``).
        """
        if threading.get_ident() != self._owner_thread:
            raise RuntimeError(
                "MooseFS.remount must be called from the thread that started the cluster:"
                " a mount started by another thread dies when that thread exits"
            )
        self._detach(index)
        self._reap(None)
        self._mount(index, time.monotonic() + self._ready_timeout)
        return self._mount_points[index]

    def set_latency(self, latency_ms: float, timeout: float = 10.0) -> None:
        """Change the added round trip of a running cluster (it must run through the proxy).

        Every connection, open or new, takes the new delay for the bytes it reads from then on.
        """
        if not self.via_proxy:
            raise MooseFSError("set_latency needs a cluster started with via_proxy=True")
        if latency_ms < 0:
            raise ValueError(f"latency_ms {latency_ms} must be 0 or more")
        request = self.directory / "proxy.delay"
        applied = self.directory / "proxy.delay.applied"
        applied.unlink(missing_ok=True)
        partial = request.with_suffix(".partial")
        partial.write_text(repr(latency_ms / 2), encoding="utf-8")
        os.replace(partial, request)
        os.kill(self._servers["proxy"].pid, signal.SIGUSR1)
        want = latency_ms / 2
        self._poll(
            "the proxy's new delay",
            time.monotonic() + timeout,
            lambda: applied.exists() and abs(float(applied.read_text() or "nan") - want) < 1e-9,
        )
        self.latency_ms = latency_ms

    def stats(self, index: int) -> dict[str, float]:
        """Client ``index``'s counters from the mount root's ``.stats`` file."""
        text = (self._mount_points[index] / ".stats").read_text(encoding="utf-8")
        return parse_stats(text)

    def master_ping_us(self, index: int) -> float:
        """``master.usec_ping`` of client ``index``: its round trip to the master, in us.

        Seen here, MooseFS 3.0.117 samples it when the client connects and kept
        that value for as long as it was watched (8 s), so it is one noisy sample
        taken while the machine was busy mounting (0.1 to 6.5 ms with no added
        latency); :meth:`lookup_rtt_us` measures steadily.
        """
        return self.stats(index).get("master.usec_ping", 0.0)

    def lookup_rtt_us(self, index: int, samples: int = 50) -> float:
        """Median time of a lookup of a missing name through client ``index``, in us.

        MooseFS caches no negative entries by default, so each such lookup is
        one round trip to the master: the latency a client really sees,
        proxy and busy cores included (``master.usec_ping`` is only sampled
        when the client connects).
        """
        directory = self._mount_points[index]
        times = []
        for n in range(samples):
            path = directory / f".rtt-probe-{os.getpid()}-{n}"
            start = time.perf_counter()
            os.path.lexists(path)
            times.append(time.perf_counter() - start)
        times.sort()
        return times[len(times) // 2] * 1e6

    def log_tails(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of every daemon's and mount's log, for error messages."""
        parts = []
        for path in sorted((self.directory / "log").glob("*.log")):
            if path.stat().st_size:
                parts.append(f"--- {path.name} ---\n{_tail(path, lines)}")
        return "\n".join(parts) or "<all logs empty>"

    def __repr__(self) -> str:
        return (
            f"<MooseFS {self._net.server_ip} latency_ms={self.latency_ms}"
            f" mounts={[str(p) for p in self._mount_points]}>"
        )

    # ------------------------------------------------------ start/stop

    def start(self) -> None:
        """Make the namespaces, start the servers (and proxy), mount every client."""
        deadline = time.monotonic() + self._ready_timeout
        for sub in (
            "master",
            "chunkserver",
            "hdd",
            "log",
            *[f"mnt{i}" for i in range(self._clients)],
        ):
            (self.directory / sub).mkdir()
        self._make_network()
        self._write_configs()
        self._spawn_server(
            "master", ["mfsmaster", "-f", "-c", str(self.directory / "mfsmaster.cfg")]
        )
        self._wait_port(self._net.server_ns_path, _MASTER_CLIENT_PORT, "master", deadline)
        self._spawn_server(
            "chunkserver",
            ["mfschunkserver", "-f", "-c", str(self.directory / "mfschunkserver.cfg")],
        )
        self._wait_port(self._net.server_ns_path, _CS_CLIENT_PORT, "chunkserver", deadline)
        if self.via_proxy:
            self._start_proxy(deadline)
        for index in range(self._clients):
            self._mount(index, deadline)
        self._wait_chunkserver_registered(deadline)
        self._set_root_attributes()

    def stop(self) -> list[str]:
        """Tear everything down, in order, even after errors; return what failed.

        Mounts first (the servers must still answer their last flushes), then
        the proxy and servers, then the namespaces, then the directory; the
        directory is only removed when no mount is left under it.
        """
        errors: list[str] = []
        for index in range(self._clients):
            try:
                self._detach(index)
            except (OSError, MooseFSError) as exc:
                errors.append(f"unmount {self._mount_points[index]}: {exc}")
        # The volume is going away: nothing a mount still holds matters, and a
        # clean mfsmount exit takes seconds.
        self._reap(0.0)
        for name in ("proxy", "chunkserver", "master"):
            proc = self._servers.pop(name, None)
            if proc is not None:
                # The data is thrown away: no need for the master's orderly
                # shutdown, which saves its metadata and takes seconds.
                _stop_process(proc, 0.0, first_signal=signal.SIGKILL)
        for netns in reversed(self._netns_made):
            try:
                _run(["ip", "netns", "delete", netns])
            except MooseFSError as exc:
                errors.append(str(exc))
        self._netns_made.clear()
        leftover = _mounts_under(self.directory)
        if leftover:
            errors.append(f"still mounted, directory kept: {', '.join(leftover)}")
        else:
            shutil.rmtree(self.directory, ignore_errors=True)
        return errors

    # -------------------------------------------------------- internals

    def _make_network(self) -> None:
        net = self._net
        for netns in (net.server_ns, net.client_ns):
            _run(["ip", "netns", "add", netns])
            self._netns_made.append(netns)
            _run(["ip", "-n", netns, "link", "set", "lo", "up"])
        # Made directly inside the namespaces: nothing appears in the machine's own.
        _run([
            "ip", "link", "add", "veth0", "netns", net.server_ns, "type", "veth",
            "peer", "name", "veth0", "netns", net.client_ns,
        ])  # fmt: skip
        for netns, address in ((net.server_ns, net.server_ip), (net.client_ns, net.client_ip)):
            _run(["ip", "-n", netns, "addr", "add", f"{address}/30", "dev", "veth0"])
            _run(["ip", "-n", netns, "link", "set", "veth0", "up"])
        if self.via_proxy:
            # The servers' address, local in the client namespace: the proxy listens
            # there, and the local route wins over the veth's connected /30.
            _run(["ip", "-n", net.client_ns, "addr", "add", f"{net.server_ip}/32", "dev", "lo"])

    def _write_configs(self) -> None:
        d = self.directory
        ip = self._net.server_ip
        common = (
            "# Generated by tests/support/moosefs.py for a throwaway test cluster.\n"
            "WORKING_USER = root\nWORKING_GROUP = root\n"
            # Do not outrank the tests, and let the OOM killer pick test daemons first.
            "NICE_LEVEL = 0\nDISABLE_OOM_KILLER = 0\nLOCK_MEMORY = 0\n"
        )
        (d / "mfsexports.cfg").write_text("* / rw,alldirs,maproot=0:0\n", encoding="utf-8")
        (d / "mfstopology.cfg").write_text("", encoding="utf-8")
        shutil.copyfile(_EMPTY_METADATA, d / "master" / "metadata.mfs")
        (d / "mfsmaster.cfg").write_text(
            common
            + f"DATA_PATH = {d}/master\n"
            + f"EXPORTS_FILENAME = {d}/mfsexports.cfg\n"
            + f"TOPOLOGY_FILENAME = {d}/mfstopology.cfg\n"
            + f"MATOML_LISTEN_HOST = {ip}\nMATOCS_LISTEN_HOST = {ip}\nMATOCL_LISTEN_HOST = {ip}\n",
            encoding="utf-8",
        )
        (d / "mfshdd.cfg").write_text(f"{d}/hdd\n", encoding="utf-8")
        (d / "mfschunkserver.cfg").write_text(
            common
            + f"DATA_PATH = {d}/chunkserver\n"
            + f"HDD_CONF_FILENAME = {d}/mfshdd.cfg\n"
            + f"MASTER_HOST = {ip}\nBIND_HOST = {ip}\nCSSERV_LISTEN_HOST = {ip}\n"
            # Retry the master every second, not every five.
            + "MASTER_RECONNECTION_DELAY = 1\n",
            encoding="utf-8",
        )

    def _popen(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        log = self.directory / "log" / f"{name}.log"
        with log.open("ab") as out:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only calls prctl
            )

    def _spawn_server(self, name: str, argv: Sequence[str]) -> None:
        self._servers[name] = self._popen(
            name, ["nsenter", f"--net={self._net.server_ns_path}", "--", *argv]
        )

    def _check_alive(self, what: str) -> None:
        for name, proc in self._servers.items():
            code = proc.poll()
            if code is not None:
                raise MooseFSError(
                    f"{name} exited with status {code} while waiting for {what}\n"
                    + self.log_tails()
                )

    def _poll(self, what: str, deadline: float, ready: Callable[[], bool]) -> None:
        delay = 0.01
        while not ready():
            self._check_alive(what)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"MooseFS: {what} not ready within {self._ready_timeout:.0f}s\n"
                    + self.log_tails()
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    def _wait_port(self, netns: Path, port: int, what: str, deadline: float) -> None:
        address = (self._net.server_ip, port)
        self._poll(
            f"{what} on port {port}", deadline, lambda: _connect_in_netns(netns, address, 1.0)
        )

    def _start_proxy(self, deadline: float) -> None:
        ready = self.directory / "proxy.ready"
        ip = self._net.server_ip
        argv = [
            sys.executable, "-I", str(_DELAY_PROXY),
            "--one-way-ms", repr(self.latency_ms / 2),
            "--listen-netns", str(self._net.client_ns_path),
            "--ready-file", str(ready),
            "--delay-file", str(self.directory / "proxy.delay"),
        ]  # fmt: skip
        for port in (_MASTER_CLIENT_PORT, _CS_CLIENT_PORT):
            argv += ["--forward", f"{ip}:{port}={ip}:{port}"]
        self._spawn_server("proxy", argv)
        self._poll("delay proxy", deadline, ready.exists)

    def _mount(self, index: int, deadline: float) -> None:
        point = self._mount_points[index]
        proc = self._popen(
            f"mount{index}",
            [
                "nsenter", f"--net={self._net.client_ns_path}", "--",
                "mfsmount", "-f", str(point),
                "-H", self._net.server_ip, "-P", str(_MASTER_CLIENT_PORT),
                "-o", "mfsnice=0,mfsallowoomkiller",
            ],
        )  # fmt: skip
        self._mount_procs[index] = proc

        def mounted() -> bool:
            code = proc.poll()
            if code is not None:
                raise MooseFSError(
                    f"mfsmount for {point} exited with status {code}\n" + self.log_tails()
                )
            return _is_mounted(point)

        self._poll(f"mount {point}", deadline, mounted)

    def _wait_chunkserver_registered(self, deadline: float) -> None:
        """Until the chunkserver has registered, the master reports no space."""
        point = self._mount_points[0]
        self._poll("chunkserver registration", deadline, lambda: os.statvfs(point).f_blocks > 0)

    def _set_root_attributes(self) -> None:
        """One copy per chunk (there is one chunkserver) and no trash.

        Set on the root, inherited by everything created after.  Without it,
        deleted files keep their chunks on disk for a day (the trash), and the
        master keeps trying to make second copies.  The tools reach the master
        through the mount's local helper, which listens in the client namespace.
        """
        point = str(self._mount_points[0])
        for tool in (["mfssettrashtime", "0"], ["mfssetgoal", "1"]):
            _run(["nsenter", f"--net={self._net.client_ns_path}", "--", *tool, point])

    def _detach(self, index: int) -> None:
        """Unmount client ``index`` and tell its mfsmount to end; do not wait for it.

        A busy mount (files still open) is detached lazily, and its mfsmount
        stopped all the same, so whatever still holds it gets errors, not a
        hang.  mfsmount takes one to three seconds to end after SIGTERM (or
        after an unmount): :meth:`_reap` waits for it later, so that a remount
        need not.  Every file was flushed when it was closed.
        """
        point = self._mount_points[index]
        proc = self._mount_procs[index]
        self._mount_procs[index] = None
        try:
            if _is_mounted(point):
                result = subprocess.run(
                    ["umount", str(point)],
                    capture_output=True,
                    timeout=self._stop_timeout,
                    check=False,
                )
                if result.returncode != 0 and _is_mounted(point):
                    _run(["umount", "-l", str(point)], timeout=self._stop_timeout)
        finally:
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                self._retiring.append(proc)

    def _reap(self, timeout: float | None) -> None:
        """Wait for detached mfsmounts to end; SIGKILL those left after ``timeout``.

        With ``timeout`` None, only forget those that have ended already.
        """
        if timeout is None:
            self._retiring = [p for p in self._retiring if p.poll() is None]
            return
        deadline = time.monotonic() + timeout
        for proc in self._retiring:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _stop_process(proc, 0.0, first_signal=signal.SIGKILL)
        self._retiring.clear()


@contextlib.contextmanager
def moosefs_cluster(
    workdir: Path,
    *,
    latency_ms: float = 0.0,
    clients: int = 2,
    via_proxy: bool | None = None,
    ready_timeout: float = 60.0,
    stop_timeout: float = 10.0,
) -> Iterator[MooseFS]:
    """Start a MooseFS cluster under ``workdir`` with ``clients`` mounts; yield it.

    Args:
        workdir: existing directory; the instance makes its own subdirectory
            there (configs, data, logs, mount points), removed afterwards.
        latency_ms: round trip added between the clients and both servers
            (half each way), by the delaying proxy.
        clients: number of mounts, each a separate ``mfsmount`` process.
        via_proxy: route through the proxy even at 0 ms (to measure the proxy
            itself); by default the proxy is used only when ``latency_ms > 0``.
        ready_timeout: seconds the start may take in all.
        stop_timeout: seconds each unmount or daemon gets to end at teardown.

    Raises:
        FileNotFoundError: a MooseFS or iproute2 binary is missing.
        MooseFSError: a daemon, mount or ``ip`` command failed (with logs).
        TimeoutError: not ready within ``ready_timeout``.
    """
    if latency_ms < 0:
        raise ValueError(f"latency_ms {latency_ms} must be 0 or more")
    if clients < 1:
        raise ValueError(f"clients {clients} must be at least 1")
    if any(char.isspace() for char in str(workdir)):
        # MooseFS config files cannot quote a path.
        raise ValueError(f"workdir {str(workdir)[:80]!r} must not contain whitespace")
    if missing := missing_binaries():
        raise FileNotFoundError(
            "MooseFS test dependencies not found: "
            + ", ".join(missing)
            + "; run scripts/install-test-deps.sh"
        )
    cleanup_stale()
    tag, network = _new_identity()
    directory = Path(
        tempfile.mkdtemp(prefix=f"{_NAME_PREFIX}-{tag.replace('x', '-')}-", dir=workdir)
    )
    fs = MooseFS(
        directory,
        network,
        clients=clients,
        latency_ms=latency_ms,
        via_proxy=latency_ms > 0 if via_proxy is None else via_proxy,
        ready_timeout=ready_timeout,
        stop_timeout=stop_timeout,
    )
    try:
        fs.start()
        yield fs
    finally:
        errors = fs.stop()
        if errors and sys.exc_info()[0] is None:
            raise MooseFSError("MooseFS teardown incomplete: " + "; ".join(errors))


# ------------------------------------------------------------------ CLI


def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.support.moosefs", description="A throwaway MooseFS for tests."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a cluster, print its mounts, run until signalled")
    up.add_argument("--dir", type=Path, required=True, help="existing directory to work in")
    up.add_argument("--latency-ms", type=float, default=0.0, help="added round trip (ms)")
    up.add_argument("--clients", type=int, default=2, help="number of mounts")
    up.add_argument("--via-proxy", action="store_true", help="use the proxy even at 0 ms")
    stats = sub.add_parser("stats", help="print a mount's .stats as JSON")
    stats.add_argument("mount", type=Path)
    sub.add_parser("cleanup", help="remove leftovers of killed runs")
    args = parser.parse_args(argv)

    if args.command == "stats":
        print(
            json.dumps(parse_stats((args.mount / ".stats").read_text(encoding="utf-8")), indent=1)
        )
        return 0
    if args.command == "cleanup":
        for item in cleanup_stale():
            print(f"removed {item}")
        return 0

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    started = time.monotonic()
    with moosefs_cluster(
        args.dir, latency_ms=args.latency_ms, clients=args.clients, via_proxy=args.via_proxy or None
    ) as fs:
        info = {
            "mounts": [str(p) for p in fs.mounts],
            "latency_ms": fs.latency_ms,
            "via_proxy": fs.via_proxy,
            "server_address": fs.server_address,
            "start_s": round(time.monotonic() - started, 3),
            "pids": fs.pids,
        }
        print(json.dumps(info), flush=True)
        stop.wait()
    return 0


# -------------------------------------------------------- pytest fixtures

INSTALL_HINT = "run scripts/install-test-deps.sh (as root) to install them"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _require_moosefs() -> None:
    """Skip (or under CI fail) when the cluster cannot be started here."""
    problems = missing_binaries()
    message = ""
    if problems:
        message = f"MooseFS test dependencies not found ({', '.join(problems)}): {INSTALL_HINT}"
    elif not Path("/dev/fuse").exists():
        message = "MooseFS fixture needs /dev/fuse (FUSE), which this machine lacks"
    elif os.geteuid() != 0:
        message = "MooseFS fixture needs root (network namespaces and FUSE mounts)"
    if message:
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture
def require_moosefs() -> None:
    """For tests that start their own cluster: skip (under CI fail) where none can run."""
    _require_moosefs()


@pytest.fixture(scope="session")
def moosefs_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., MooseFS]]:
    """``factory(latency_ms=0.0, clients=2, via_proxy=None) -> MooseFS``.

    One cluster per distinct set of arguments for the whole session, started
    on first request and torn down at the session's end.
    """
    _require_moosefs()
    with contextlib.ExitStack() as stack:
        clusters: dict[tuple[float, int, bool | None], MooseFS] = {}

        def factory(
            latency_ms: float = 0.0, clients: int = 2, via_proxy: bool | None = None
        ) -> MooseFS:
            key = (float(latency_ms), clients, via_proxy)
            if key not in clusters:
                clusters[key] = stack.enter_context(
                    moosefs_cluster(
                        tmp_path_factory.mktemp("moosefs"),
                        latency_ms=latency_ms,
                        clients=clients,
                        via_proxy=via_proxy,
                    )
                )
            return clusters[key]

        yield factory


@pytest.fixture(scope="session")
def moosefs(moosefs_factory: Callable[..., MooseFS]) -> MooseFS:
    """A session's MooseFS volume with two mounts and no added latency."""
    return moosefs_factory()


if __name__ == "__main__":
    sys.exit(_cli())
