"""Downloads of single pinned files (uv's wheel, pynvml's wheel, flash-attn's wheel).

Each file is checked against the sha256 the code pins, written under a temporary name and
renamed into place, so a killed download never looks complete. Network errors are retried
with backoff, within the install's deadline; a wrong hash is refused at once. URLs in errors
and logs are shown without credentials or query strings.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

from .errors import FetchError, from_os_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .deadline import Deadline

_CHUNK = 1 << 20
_PROGRESS_EVERY_S = 5.0


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The default context, trusting a custom CA bundle when one is configured."""
    if ca_bundle and Path(ca_bundle).is_dir():
        return ssl.create_default_context(capath=ca_bundle)
    return ssl.create_default_context(cafile=ca_bundle or None)


def redact_url(url: str) -> str:
    """`url` without user, password or query string: what may appear in a log or an error."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unparseable URL)"
    if ":" in host:
        host = f"[{host}]"
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))


class _DeadlinePassed(Exception):
    pass


class _WriteFailed(Exception):
    """Writing the downloaded bytes failed: the disk, not the network, so never retried."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _timeout(timeout_s: float, deadline: Deadline | None) -> float:
    if deadline is None:
        return timeout_s
    left = deadline.left()
    if left <= 0:
        raise _DeadlinePassed
    return min(timeout_s, left)


def _late(url: str, deadline: Deadline) -> FetchError:
    return FetchError(
        url,
        f"no answer within the install's deadline ({deadline.spent():.0f} s of "
        f"RUNPOD_SLIM_INSTALL_TIMEOUT={deadline.timeout_s:g}): check that it answers from "
        f"this worker, raise RUNPOD_SLIM_INSTALL_TIMEOUT, or start from a warm cache",
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    dest: Path,
    sha256: str,
    *,
    ca_bundle: str | None,
    retries: int,
    log: Callable[[str], None],
    timeout_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> Path:
    """Fetch `url` to `dest` unless a file with that sha256 is there already."""
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, f"saving {dest.name}", dest.parent) from None
    part = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    attempt = 0
    while True:
        try:
            actual = _stream(url, part, ca_bundle, timeout_s, log, deadline)
            break
        except _WriteFailed as failed:
            part.unlink(missing_ok=True)
            raise from_os_error(failed.error, f"saving {dest.name}", dest.parent) from None
        except _DeadlinePassed:
            part.unlink(missing_ok=True)
            assert deadline is not None
            raise _late(url, deadline) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            part.unlink(missing_ok=True)
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 429:
                raise FetchError(url, f"HTTP {exc.code} {exc.reason}") from None
            attempt += 1
            delay = min(2.0**attempt, 30.0)
            if deadline is not None and deadline.left() <= delay:
                raise _late(url, deadline) from None
            if attempt > retries:
                raise FetchError(url, f"{_reason(exc)} (after {attempt} attempts)") from None
            log(f"fetch: {_reason(exc)}; retrying in {delay:.0f} s ({attempt}/{retries})")
            sleep(delay)
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise FetchError(
            url, f"sha256 is {actual}, expected {sha256}: not the pinned file, refused"
        )
    try:
        os.replace(part, dest)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise from_os_error(exc, f"saving {dest.name}", dest) from None
    return dest


def _stream(
    url: str,
    part: Path,
    ca_bundle: str | None,
    timeout_s: float,
    log: Callable[[str], None],
    deadline: Deadline | None,
) -> str:
    digest = hashlib.sha256()
    context = ssl_context(ca_bundle) if url.startswith("https://") else None
    request = urllib.request.Request(url, headers={"User-Agent": "runpod-slim-bootstrap"})
    opened = urllib.request.urlopen(request, timeout=_timeout(timeout_s, deadline), context=context)
    with opened as response:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        last = time.monotonic()
        name = url.rsplit("/", 1)[-1]
        try:
            # Unbuffered: a full disk fails in _write, not later in a close outside it.
            out = part.open("wb", buffering=0)
        except OSError as exc:
            raise _WriteFailed(exc) from None
        with out:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                _timeout(timeout_s, deadline)  # a server that trickles stops at the deadline
                _write(out, chunk)
                digest.update(chunk)
                done += len(chunk)
                if time.monotonic() - last >= _PROGRESS_EVERY_S:
                    last = time.monotonic()
                    log(f"fetch: {name} {_mb(done)}" + (f" of {_mb(total)}" if total else ""))
            try:
                os.fsync(out.fileno())
            except OSError as exc:
                raise _WriteFailed(exc) from None
    return digest.hexdigest()


def _write(out: io.FileIO, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[out.write(view) or 0 :]
    except OSError as exc:
        raise _WriteFailed(exc) from None


def index_file_url(
    index_url: str,
    project: str,
    filename: str,
    *,
    ca_bundle: str | None,
    timeout_s: float = 30.0,
    deadline: Deadline | None = None,
) -> str:
    """The download URL of `filename` on a PEP 503/691 simple index."""
    page = f"{index_url.rstrip('/')}/{project}/"
    request = urllib.request.Request(
        page,
        headers={
            "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
            "User-Agent": "runpod-slim-bootstrap",
        },
    )
    context = ssl_context(ca_bundle) if page.startswith("https://") else None
    try:
        timeout = _timeout(timeout_s, deadline)
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = response.read().decode()
            kind = response.headers.get("Content-Type", "")
    except _DeadlinePassed:
        assert deadline is not None
        raise _late(page, deadline) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        if deadline is not None and deadline.expired():
            raise _late(page, deadline) from None
        raise FetchError(page, _reason(exc)) from None
    if "json" in kind:
        for entry in json.loads(body).get("files", []):
            if entry.get("filename") == filename:
                return str(entry["url"])
    else:
        links = _Links()
        links.feed(body)
        for href in links.hrefs:
            if href.split("#", 1)[0].rsplit("/", 1)[-1] == filename:
                return urllib.parse.urljoin(page, href.split("#", 1)[0])
    raise FetchError(page, f"the index lists no file named {filename}")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return re.sub(r"\s+", " ", str(exc)) or type(exc).__name__


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"
