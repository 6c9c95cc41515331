"""A throwaway, single-node Ceph cluster serving the S3 API through radosgw.

The tests use a real S3 implementation instead of an in-process mock.  This
module builds a complete, private Ceph cluster under one directory:

* one monitor (``mon.a``) on a free loopback port, messenger v2 only;
* one OSD (``osd.0``) with the ``memstore`` object store, so object data lives
  in memory and nothing touches a block device;
* one radosgw (``client.rgw.gw``) with the beast frontend on another free
  loopback port;
* cephx authentication (radosgw never finishes connecting with ``auth none``).

Every path the daemons use (configuration, keyring, data directories, admin
sockets, pid files, logs, crash dumps) points inside that directory, and every
command is given ``-c <conf>``, so the machine's ``/etc/ceph`` and
``/var/lib/ceph`` are never read or written.  Two instances never share a
directory or a port, so parallel test sessions do not collide.

Only the standard library is used.  Typical use::

    with RadosGateway(tmp_dir) as rgw:
        boto3.client("s3", endpoint_url=rgw.endpoint_url,
                     aws_access_key_id=rgw.access_key,
                     aws_secret_access_key=rgw.secret_key,
                     region_name=rgw.region)

The Ceph binaries come from Debian's ``ceph-mon``, ``ceph-osd`` and ``radosgw``
packages (``scripts/install-test-deps.sh`` installs them).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

__all__ = [
    "REQUIRED_BINARIES",
    "RadosGateway",
    "RadosGatewayError",
    "missing_binaries",
]

#: Executables that must be on ``PATH`` to start a gateway.
REQUIRED_BINARIES: tuple[str, ...] = (
    "ceph",
    "ceph-authtool",
    "ceph-mon",
    "ceph-osd",
    "monmaptool",
    "radosgw",
    "radosgw-admin",
)

_HOST = "127.0.0.1"
_MIB = 1024 * 1024
_LOG_TAIL_LINES = 25
# Environment variables that would make the Ceph tools read another
# configuration or another Python installation's modules.
_SCRUBBED_ENV = ("CEPH_CONF", "CEPH_ARGS", "CEPH_KEYRING", "PYTHONPATH", "PYTHONHOME")
_PR_SET_PDEATHSIG = 1
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux

_T = TypeVar("_T")

# The endpoint is on loopback: never go through an HTTP(S)_PROXY from the env.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_live: weakref.WeakSet[RadosGateway] = weakref.WeakSet()


class RadosGatewayError(RuntimeError):
    """A Ceph command or daemon failed while the gateway was starting."""


def missing_binaries() -> list[str]:
    """Return the names from :data:`REQUIRED_BINARIES` not found on ``PATH``."""
    return [name for name in REQUIRED_BINARIES if shutil.which(name) is None]


def _free_ports(count: int) -> list[int]:
    """Return ``count`` distinct loopback TCP ports that are free right now.

    All sockets are held open until every port is chosen, so the ports differ
    from each other.  Another process may still take one before the daemon
    binds it; :meth:`RadosGateway.start` retries with new ports in that case.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((_HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace").strip()
    return (data or "").strip()


def _load_prctl() -> Callable[..., int] | None:
    """``prctl(2)`` from the C library, or None where there is none (not Linux)."""
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent thread exits.

    This keeps daemons from outliving a test run that was killed before its
    clean-up code could run.  ``prctl`` is looked up beforehand, in the parent,
    so the child only makes the call.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _PortTakenError(RadosGatewayError):
    """A daemon could not bind the port chosen for it (lost a race)."""


class RadosGateway:
    """A private mon + memstore OSD + radosgw cluster serving S3 on loopback.

    Construct it with a parent directory, then call :meth:`start` (or use it as
    a context manager).  It creates its own fresh subdirectory there, removed
    again by :meth:`stop`.

    After :meth:`start`, :attr:`endpoint_url`, :attr:`access_key`,
    :attr:`secret_key` and :attr:`region` are what an S3 client needs.

    The daemons are killed if the thread that started them exits without
    stopping them (Linux ``PR_SET_PDEATHSIG``), so start it from a thread
    that lives as long as the gateway is used, such as the main thread.
    """

    #: Region name to give S3 clients.  radosgw accepts any region in SigV4
    #: credential scopes (its zonegroup is "default"); with ``us-east-1``,
    #: ``create_bucket`` needs no ``CreateBucketConfiguration``.
    region: str = "us-east-1"

    def __init__(
        self,
        parent_dir: str | os.PathLike[str],
        *,
        memstore_bytes: int = 2048 * _MIB,
        ready_timeout: float = 90.0,
        stop_timeout: float = 10.0,
        user_id: str = "tester",
    ) -> None:
        """Prepare (but do not start) a gateway.

        Args:
            parent_dir: existing directory to create the cluster directory in.
            memstore_bytes: capacity the memstore OSD reports.  Data is held
                in memory, so this is an upper bound on memory for objects,
                not an allocation.
            ready_timeout: seconds :meth:`start` may take in all before it
                raises :class:`TimeoutError`.
            stop_timeout: seconds each daemon gets to exit after SIGTERM
                before it is sent SIGKILL.
            user_id: uid of the S3 user created by :meth:`start`.
        """
        self._parent = Path(parent_dir)
        self._memstore_bytes = memstore_bytes
        self._ready_timeout = ready_timeout
        self._stop_timeout = stop_timeout
        self._user_id = user_id
        self._dir: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._port = 0
        self._access_key = ""
        self._secret_key = ""

    # ----------------------------------------------------------------- API

    @property
    def directory(self) -> Path:
        """The cluster's own directory (conf, keyring, data, logs)."""
        return self._require_started(self._dir)

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the S3 endpoint."""
        self._require_started(self._dir)
        return f"http://{_HOST}:{self._port}"

    @property
    def access_key(self) -> str:
        """Access key id of the S3 user."""
        return self._require_started(self._access_key)

    @property
    def secret_key(self) -> str:
        """Secret access key of the S3 user."""
        return self._require_started(self._secret_key)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running daemons, by name (mon, osd, rgw)."""
        return {name: proc.pid for name, proc in self._procs.items() if proc.poll() is None}

    @property
    def conf_path(self) -> Path:
        """The cluster's ``ceph.conf``; pass it as ``-c`` to Ceph tools."""
        return self.directory / "ceph.conf"

    def boto3_client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("s3", **kwargs)``."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    def start(self, *, attempts: int = 3) -> RadosGateway:
        """Create the cluster, start its daemons and an S3 user; return self.

        Blocks until the S3 endpoint answers HTTP requests and the user
        exists.  On failure everything started so far is stopped and the
        directory removed.  A daemon losing its port to another process is
        retried with fresh ports up to ``attempts`` times.

        Raises:
            TimeoutError: not ready within ``ready_timeout`` seconds; the
                message has the tail of the daemons' logs.
            RadosGatewayError: a Ceph command failed or a daemon exited.
        """
        if self._dir is not None:
            raise RuntimeError("RadosGateway already started")
        if missing := missing_binaries():
            raise FileNotFoundError(
                "Ceph binaries not found on PATH: "
                + ", ".join(missing)
                + "; run scripts/install-test-deps.sh"
            )
        deadline = time.monotonic() + self._ready_timeout
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(deadline)
            except _PortTakenError:
                self.stop()
                if attempt == attempts:
                    raise
            except BaseException:
                self.stop()
                raise
            else:
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop all daemons and remove the cluster directory.  Idempotent.

        The daemons are stopped one at a time, radosgw, then the OSD, then the
        monitor: radosgw hangs on shutdown if its OSD is gone, and an OSD whose
        monitor is gone waits seconds before exiting.  In order, it takes
        well under a second.  Each gets SIGTERM to its process group, then
        SIGKILL after ``stop_timeout`` seconds.
        """
        for name in ("rgw", "osd", "mon"):
            if name in self._procs:
                self._terminate(name)
        self._procs.clear()
        _live.discard(self)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._port = 0
        self._access_key = self._secret_key = ""

    def __enter__(self) -> RadosGateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.endpoint_url if self._dir is not None else "stopped"
        return f"<RadosGateway {state}>"

    def log_tails(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of every log file, for error messages."""
        if self._dir is None:
            return "<no cluster directory>"
        parts = []
        for path in sorted((self._dir / "log").glob("*")):
            if path.is_file() and path.stat().st_size:
                parts.append(f"--- {path.name} (last {lines} lines) ---\n{_tail(path, lines)}")
        return "\n".join(parts) or "<all logs empty>"

    # ------------------------------------------------------------ internals

    @staticmethod
    def _require_started(value: _T) -> _T:
        if not value:
            raise RuntimeError("RadosGateway is not started")
        return value

    def _start_once(self, deadline: float) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="ceph-", dir=self._parent))
        _live.add(self)
        for sub in ("mon", "osd", "rgw", "run", "log", "crash", "tmp"):
            (self._dir / sub).mkdir()
        mon_port, self._port = _free_ports(2)
        fsid = str(uuid.uuid4())
        osd_uuid = str(uuid.uuid4())
        self.conf_path.write_text(self._render_conf(fsid, mon_port), encoding="utf-8")
        self._write_keyring(deadline)

        monmap = self._dir / "monmap"
        self._run(
            [
                "monmaptool",
                "--create",
                "--fsid",
                fsid,
                "--addv",
                "a",
                f"[v2:{_HOST}:{mon_port}]",
                str(monmap),
            ],
            deadline,
        )
        self._run(["ceph-mon", "-i", "a", "--mkfs", "--monmap", str(monmap)], deadline)
        self._run(
            # --no-mon-config: otherwise it waits for a monitor to fetch config.
            ["ceph-osd", "-i", "0", "--mkfs", "--no-mon-config", "--osd-uuid", osd_uuid],
            deadline,
        )
        self._spawn("mon", ["ceph-mon", "-i", "a"])
        # Registers osd.0 in the OSD map; this also waits for the monitor.
        self._run(["ceph", "osd", "new", osd_uuid, "0"], deadline)
        self._spawn("osd", ["ceph-osd", "-i", "0"])
        self._spawn("rgw", ["radosgw", "-n", "client.rgw.gw"])
        self._wait_http(deadline)
        self._create_user(deadline)

    def _render_conf(self, fsid: str, mon_port: int) -> str:
        d = self._dir
        assert d is not None
        # ``$name`` is expanded by Ceph (mon.a, osd.0, client.rgw.gw, ...).
        admin_socket = f"{d}/run/$name.asok"
        if len(admin_socket.replace("$name", "client.rgw.gw")) >= _MAX_SOCKET_PATH:
            admin_socket = ""  # too long for a Unix socket; nothing here needs one
        return f"""\
# Generated by tests/support/radosgw.py for a throwaway test cluster.
[global]
fsid = {fsid}
mon host = v2:{_HOST}:{mon_port}
public addr = {_HOST}
cluster addr = {_HOST}
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = {d}/keyring
run dir = {d}/run
admin socket = {admin_socket}
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
mon cluster log file = {d}/log/cluster.log
crash dir = {d}/crash
tmp dir = {d}/tmp
# One OSD, no replication: pools of size 1 are healthy.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool delete = true
mon allow pool size one = true
mon warn on pool no redundancy = false
# Do not shut the monitor down when the disk holding the directory is full-ish.
mon data avail warn = 1
mon data avail crit = 0
# Start-up speed.  radosgw creates its pools one after another on first
# start, each an OSD map change: commit those promptly instead of batching
# them for a second, let the monitor's periodic work (PG creation) run every
# second instead of every five, and let clients (radosgw) retry operations
# that waited for the OSD to come up every half second instead of every five.
# Together: ready in 1-2 s instead of 5-12 s.
paxos propose interval = 0.05
paxos min wait = 0.01
mon tick interval = 1
objecter tick interval = 0.5
osd mon shutdown timeout = 2
# A port taken by someone else: fail at once (start() retries with new ports)
# rather than retrying the bind three times, five seconds apart.
ms bind retry count = 1

[mon.a]
mon data = {d}/mon

[osd.0]
osd data = {d}/osd
osd objectstore = memstore
memstore device bytes = {self._memstore_bytes}
osd op num shards = 2

[client.rgw.gw]
rgw data = {d}/rgw
rgw frontends = beast endpoint={_HOST}:{self._port}
rgw thread pool size = 16
rgw enable usage log = false
rgw dynamic resharding = false
# Reclaim the tails of deleted multipart objects soon, not after two hours.
rgw gc obj min wait = 5
rgw gc processor period = 10
"""

    def _write_keyring(self, deadline: float) -> None:
        keyring = str(self.directory / "keyring")
        # One keyring for all entities; ``ceph-mon --mkfs`` imports every key
        # in it (with caps) into the monitor's auth database.
        entities: list[tuple[str, list[str]]] = [
            ("mon.", ["mon", "allow *"]),
            ("client.admin", ["mon", "allow *", "osd", "allow *", "mgr", "allow *"]),
            ("osd.0", ["mon", "allow profile osd", "osd", "allow *", "mgr", "allow profile osd"]),
            ("client.rgw.gw", ["mon", "allow rw", "osd", "allow rwx", "mgr", "allow rw"]),
        ]
        for index, (name, caps) in enumerate(entities):
            cmd = ["ceph-authtool", keyring]
            if index == 0:
                cmd.append("--create-keyring")
            cmd += ["--gen-key", "-n", name]
            for subsystem, cap in zip(caps[::2], caps[1::2], strict=True):
                cmd += ["--cap", subsystem, cap]
            self._run(cmd, deadline, with_conf=False)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env["TMPDIR"] = str(self.directory / "tmp")
        return env

    def _run(self, cmd: Sequence[str], deadline: float, *, with_conf: bool = True) -> str:
        """Run a Ceph command to completion; return its stdout.

        While it runs, the daemons are watched: if one dies (say the monitor
        could not bind its port), the command is killed and that is reported,
        instead of waiting for a monitor that will never answer.
        """
        argv = [cmd[0], "-c", str(self.conf_path), *cmd[1:]] if with_conf else list(cmd)
        command = " ".join(argv)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env(),
        )
        try:
            while True:
                try:
                    stdout, stderr = proc.communicate(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    self._check_alive()
                    if time.monotonic() >= deadline:
                        raise TimeoutError(
                            f"{command} did not finish within the {self._ready_timeout:.0f}s"
                            f" start-up deadline\n{self.log_tails()}"
                        ) from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        if proc.returncode != 0:
            self._check_alive()
            raise self._error(
                f"{command} exited {proc.returncode}\n"
                f"stdout: {_text(stdout)}\nstderr: {_text(stderr)}"
            )
        self._check_alive()
        return _text(stdout)

    def _spawn(self, name: str, cmd: Sequence[str]) -> None:
        """Start a daemon in the foreground in its own process group."""
        log = self.directory / "log" / f"{name}.stderr"
        with log.open("wb") as out:
            self._procs[name] = subprocess.Popen(
                [cmd[0], "-c", str(self.conf_path), "-f", *cmd[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only calls prctl
            )

    def _check_alive(self) -> None:
        """Raise if a daemon has exited: they are meant to run until stopped."""
        for name, proc in self._procs.items():
            code = proc.poll()
            if code is not None:
                raise self._error(f"ceph daemon {name} exited with status {code} during start-up")

    def _error(self, message: str) -> RadosGatewayError:
        """An exception for a start-up failure, with the logs' tails appended.

        A daemon that lost its port to another process (the ports are chosen
        free, then bound a moment later) gives :class:`_PortTakenError`, which
        :meth:`start` retries with new ports.
        """
        tails = self.log_tails()
        if "Address already in use" in tails:
            return _PortTakenError(f"{message} (port taken)\n{tails}")
        return RadosGatewayError(f"{message}\n{tails}")

    def _wait_http(self, deadline: float) -> None:
        """Poll the S3 endpoint until it answers an HTTP request."""
        url = self.endpoint_url + "/"
        delay = 0.05
        last_error = "no attempt made"
        while True:
            self._check_alive()
            try:
                with _NO_PROXY.open(url, timeout=2) as response:
                    response.read()
                return
            except urllib.error.HTTPError:
                return  # any HTTP answer (even 403) means the frontend is serving
            except (OSError, http.client.HTTPException) as exc:
                last_error = repr(exc)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"radosgw at {url} not ready within {self._ready_timeout:.0f}s "
                    f"(last error: {last_error})\n{self.log_tails()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def _create_user(self, deadline: float) -> None:
        out = self._run(
            [
                "radosgw-admin",
                "-n",
                "client.admin",
                "user",
                "create",
                "--uid",
                self._user_id,
                "--display-name",
                "test user",
            ],
            deadline,
        )
        keys = json.loads(out)["keys"][0]
        self._access_key = str(keys["access_key"])
        self._secret_key = str(keys["secret_key"])

    def _terminate(self, name: str) -> None:
        """SIGTERM a daemon's process group; SIGKILL it if it lingers."""
        proc = self._procs[name]
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=self._stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@atexit.register
def _stop_leftovers() -> None:
    """Stop gateways whose owner never called :meth:`RadosGateway.stop`."""
    for gateway in list(_live):
        gateway.stop()
