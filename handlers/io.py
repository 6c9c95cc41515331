"""Where job data comes from and where results go.

Sources: `https://` and `http://` URLs, `s3://bucket/key`, `volume://path` under the network
volume, and base64 fields. Destinations: `s3://bucket/key` and `volume://path`. Every source
lands in the job's own directory as a file, streamed, under a size limit.

Safety, in one place:
- a volume path never leaves the volume: no absolute paths, no `..`, no symlink out;
- a URL download goes to public addresses only (every address its host resolves to, and
  every redirect), unless RUNPOD_SLIM_ALLOW_PRIVATE_URLS is set; no other schemes;
- credentials are never logged or returned: errors pass through `redact`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import netguard, redaction, volume
from .config import JOB_TIMEOUT_S, BucketCredentials, HandlerConfig
from .errors import JobError
from .validation import Field, validate

SOURCE_SCHEMES = ("https", "http", "s3", "volume")
# Results too big to return inline land here: a folder jobs may read back (not the cache).
OUTPUTS = "runpod-slim-outputs"
_CHUNK = 1 << 20


Target = Path | volume.VolumePath  # a file in the job's own directory, or on the volume


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


redact = redaction.redact  # handler.py's name for it
shown_url = redaction.shown_url


# --- locations --------------------------------------------------------------------------------


def parse_s3(url: str, field: str) -> S3Location:
    """`s3://bucket/key` checked: a bucket name S3 servers take, a key of valid UTF-8."""
    shown = _short(url)
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme != "s3" or not parsed.netloc:
        raise JobError(f"{field}={shown} is not an s3:// location; write s3://bucket/key")
    bucket, key = parsed.netloc, url.split("://", 1)[1][len(parsed.netloc) :].lstrip("/")
    if not _BUCKET.match(bucket):
        raise JobError(
            f"{field}={shown}: {bucket[:70]!r} is not a bucket name (3 to 63 letters, digits, "
            "dots, dashes or underscores)"
        )
    if "\x00" in key or not _encodes(key) or len(key.encode(errors="replace")) > 1024:
        raise JobError(
            f"{field}={shown}: the key must be valid UTF-8, without NUL, at most 1024 bytes"
        )
    return S3Location(bucket, key)


_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,62}$")


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def volume_path(url: str, field: str, config: HandlerConfig) -> Path:
    """The path under the volume that `volume://relative/path` names; never outside it.

    Checked by handlers.volume: no link followed, never the worker's own cache.
    """
    vp = volume.parse(url, field, config)
    with contextlib.suppress(FileNotFoundError), volume.directory(vp, depth=len(vp.parts)):
        pass  # every existing folder on the way is walked and checked; a missing tail is fine
    return vp.path


def scheme_of(url: str, field: str, allowed: tuple[str, ...] = SOURCE_SCHEMES) -> str:
    found = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)  # urlsplit raises on some URLs
    scheme = found.group(1).lower() if found else ""
    if scheme not in allowed:
        raise JobError(
            f"{field}={_short(url)} has scheme {scheme or 'none'!r}; allowed: "
            + ", ".join(f"{s}://" for s in allowed)
        )
    return scheme


# --- S3 -------------------------------------------------------------------------------------


def credentials_for(
    job_input: Mapping[str, Any], config: HandlerConfig, job_secrets: list[str]
) -> BucketCredentials:
    """The job's own credentials if it gives them, else the worker's BUCKET_* settings.

    A job's own endpoint obeys the rules of URL sources: http(s) only, and a public address
    unless RUNPOD_SLIM_ALLOW_PRIVATE_URLS is set (s3_client connects to the address checked).
    """
    given = job_input.get("credentials")
    if given is not None:
        if isinstance(given, dict):
            # Kept before any check, so that no error about them can show them.
            job_secrets.extend(
                v for k, v in given.items() if k != "endpoint_url" and isinstance(v, str)
            )
        checked = validate(given, CREDENTIAL_FIELDS, where="input.credentials")
        return BucketCredentials(
            checked["endpoint_url"],
            checked["access_key_id"],
            checked["secret_access_key"],
            checked["region"],
            job_given=True,
            allow_private=config.allow_private_urls,
        )
    if config.bucket is None:
        raise JobError(
            "this job needs S3 credentials: set BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID and "
            "BUCKET_SECRET_ACCESS_KEY on the endpoint, or pass input.credentials"
        )
    return config.bucket


def _endpoint_complaint(url: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "is not a valid URL; write https://host[:port]"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an http:// or https:// URL with a host, such as https://s3.example.com"
    if parts.username is not None or parts.query or parts.fragment:
        return "must not carry a user, a query or a fragment; write https://host[:port]"
    if not url.isascii() or any(c.isspace() for c in url):
        return "must be plain ASCII without spaces"
    return None


_REGION = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _region_complaint(region: str) -> str | None:
    if _REGION.match(region):
        return None
    return "is not a region name: lowercase letters, digits and dashes, such as us-east-1"


CREDENTIAL_FIELDS = {
    "endpoint_url": Field(
        str,
        max_length=2048,
        check=_endpoint_complaint,
        help="the S3 endpoint, such as https://s3.example.com",
    ),
    "access_key_id": Field(str, required=True, secret=True, max_length=1024),
    "secret_access_key": Field(str, required=True, secret=True, max_length=1024),
    "region": Field(str, default="us-east-1", max_length=63, check=_region_complaint),
}


def s3_client(credentials: BucketCredentials) -> Any:
    """A boto3 S3 client for these credentials (path-style: works with every S3 server).

    For a job's own endpoint, the client connects through a netguard.Guard: the host is
    resolved once, checked, and every connection goes to that address.
    """
    import boto3
    from botocore.config import Config

    guard = None
    if credentials.job_given and credentials.endpoint_url:
        field = "input.credentials.endpoint_url"
        shown = _short(shown_url(credentials.endpoint_url))
        guard = netguard.Guard(field, shown, credentials.allow_private)
        guard.addresses(*netguard.endpoint_host(credentials.endpoint_url))
    try:
        client = boto3.client(
            "s3",
            endpoint_url=credentials.endpoint_url,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            region_name=credentials.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=30,
                read_timeout=60,
            ),
        )
    except ValueError as exc:  # botocore's invalid endpoint or region
        raise JobError(f"cannot use these S3 credentials: {_reason(exc)}") from None
    if guard is not None:
        netguard.pin_boto3_client(client, guard)
    return client


def transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    # Multipart above 64 MiB in 16 MiB parts: big objects go in parallel and resume by part.
    return TransferConfig(
        multipart_threshold=64 * 2**20, multipart_chunksize=16 * 2**20, max_concurrency=8
    )


def s3_error(exc: Exception, location: object) -> JobError:
    """A botocore error as one sentence naming the object and the server's answer."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    code = error.get("Code") or "no answer"
    # botocore's own words name local files (temp paths) and exception types: one short line.
    message = error.get("Message") or redaction.redact(_reason(exc), ())
    hints = {
        "InvalidAccessKeyId": "the access key is not known to this server",
        "SignatureDoesNotMatch": "the secret key is wrong",
        "AccessDenied": "these credentials may not do this",
        "NoSuchBucket": "no such bucket",
        "NoSuchKey": "no such object",
        "404": "no such object",
        "403": "access denied: check the credentials",
    }
    hint = hints.get(str(code), str(message)[:160])
    return JobError(f"S3 refused {location}: {str(code)[:40]}: {hint}")


# --- fetching sources ----------------------------------------------------------------------


def fetch_source(
    url: str,
    field: str,
    job_input: Mapping[str, Any],
    config: HandlerConfig,
    dest: Target,
    job_secrets: list[str],
    deadline: float | None = None,
) -> tuple[Path, str | None]:
    """Bring the file at `url` to `dest` (written atomically): (local path, sha256).

    The sha256 is computed while the bytes stream in; a volume:// source is already local, is
    read in place (its own path is returned) and has no sha256 yet (None). Blocking: run in a
    thread.
    """
    scheme = scheme_of(url, field)
    if scheme == "volume":
        path = volume.regular_file(volume.parse(url, field, config))
        _check_size(path.stat().st_size, field, config)
        return path, None
    if scheme == "s3":
        location = parse_s3(url, field)
        client = s3_client(credentials_for(job_input, config, job_secrets))
        try:
            head = client.head_object(Bucket=location.bucket, Key=location.key)
            _check_size(int(head["ContentLength"]), field, config)
            with _atomic_write(dest) as out:
                writer = _HashingWriter(out)
                client.download_fileobj(
                    location.bucket, location.key, writer, Config=transfer_config()
                )
                digest = writer.hexdigest()
        except JobError:
            raise
        except Exception as exc:
            raise s3_error(exc, location) from None
        return _where(dest), digest
    if deadline is None:
        deadline = time.monotonic() + config.job_timeout_s
    return _where(dest), _download_url(url, field, dest, config, deadline)


def decode_base64(data: str, field: str, dest: Target, config: HandlerConfig) -> tuple[Path, str]:
    """Write a base64 field to dest: (dest, sha256). Not base64 or over the limit: refused."""
    if len(data) * 3 // 4 > config.max_download_bytes:
        raise JobError(
            f"{field} decodes to over {config.max_download_bytes / 1e6:.0f} MB, the limit"
        )
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]  # a data: URL's payload
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise JobError(f"{field} is not valid base64") from None
    with _atomic_write(dest) as out:
        out.write(raw)
    return _where(dest), hashlib.sha256(raw).hexdigest()


def _check_size(size: int, field: str, config: HandlerConfig) -> None:
    if size > config.max_download_bytes:
        raise JobError(
            f"{field} is {size / 1e6:.1f} MB; the limit is "
            f"{config.max_download_bytes / 1e6:.0f} MB "
            f"(RUNPOD_SLIM_MAX_DOWNLOAD_MB)"
        )


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects to http(s) only; the host is checked when the guard connects to it."""

    def __init__(self, field: str) -> None:
        self.field = field

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        scheme_of(newurl, self.field, ("https", "http"))
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _HashingWriter:
    """A file for downloads that hashes the bytes, in order, as they are written.

    s3transfer writes the parts of a parallel download at their offsets (seek, then write),
    often but not always in order. Bytes that extend the hashed prefix are hashed at once;
    a part that arrives early is read back from the page cache when the gap before it fills.
    So the hash costs no second pass over the file, and the download stays parallel.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha256 = hashlib.sha256()
        self.hashed = 0  # bytes [0, hashed) are in the digest
        self.early: dict[int, int] = {}  # offset -> length of parts written past a gap
        self.position = 0

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.position = self.out.seek(offset, whence)
        return self.position

    def tell(self) -> int:
        return self.position

    def write(self, data: bytes) -> int:
        start = self.position
        written = self.out.write(data)
        self.position += written
        if start == self.hashed:
            self.sha256.update(data)
            self.hashed += written
            self._catch_up()
        elif start > self.hashed:
            self.early[start] = written
        return written

    def _catch_up(self) -> None:
        if self.hashed not in self.early:
            return
        self.out.flush()
        while self.hashed in self.early:
            length = self.early.pop(self.hashed)
            self.sha256.update(os.pread(self.out.fileno(), length, self.hashed))
            self.hashed += length

    def hexdigest(self) -> str:
        if self.early:
            raise JobError("the download left a gap in the file; it was not completed")
        return self.sha256.hexdigest()


def _download_url(
    url: str, field: str, dest: Target, config: HandlerConfig, deadline: float
) -> str:
    """Stream `url` into dest under the size limit and the job's deadline: its sha256.

    The deadline holds for the whole transfer, not each read: a source that sends a byte now
    and then is cut off when the job's time is up. Each read waits at most the time left.
    """
    shown = _short(shown_url(url))
    guard = netguard.Guard(field, shown, config.allow_private_urls)
    try:
        host, port = netguard.endpoint_host(url)
    except ValueError:
        raise JobError(f"{field}={shown} has a port that is not a number from 1 to 65535") from None
    guard.addresses(host, port)  # refused before any connection when private
    opener = netguard.opener(guard, _CheckedRedirects(field))
    request = urllib.request.Request(url, headers={"User-Agent": "runpod-slim"})

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise JobError(
                f"{field}: {shown} did not arrive within the job's time limit "
                f"({config.job_timeout_s} s, {JOB_TIMEOUT_S})"
            )
        return min(60.0, remaining)

    try:
        with opener.open(request, timeout=left()) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit():
                _check_size(int(length), field, config)
            with _atomic_write(dest) as out:
                writer = _HashingWriter(out)
                done = 0
                while True:
                    wait = left()
                    for sock in guard.sockets:
                        if sock.fileno() >= 0:  # earlier hops' sockets are closed
                            sock.settimeout(wait)
                    chunk = response.read1(_CHUNK)  # what has arrived: the deadline is seen
                    if not chunk:
                        break
                    done += len(chunk)
                    _check_size(done, field, config)
                    writer.write(chunk)
            return writer.hexdigest()
    except urllib.error.HTTPError as exc:
        reason = str(exc.reason)[:80]
        raise JobError(f"{field}: {shown} answered HTTP {exc.code} {reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, JobError):
            raise exc.reason from None
        raise JobError(f"{field}: cannot download {shown}: {_reason(exc.reason)}") from None
    except (http.client.HTTPException, ValueError) as exc:
        raise JobError(f"{field}: cannot download {shown}: {_reason(exc)}") from None
    except TimeoutError:
        left()  # the deadline, if that was it
        raise JobError(f"{field}: {shown} stopped sending for 60 s; gave up") from None
    except OSError as exc:
        raise JobError(f"{field}: cannot download {shown}: {_reason(exc)}") from None
    finally:
        for sock in guard.sockets:
            sock.close()


def _reason(exc: object) -> str:
    """An exception's own words, one line, short, without its type's name."""
    text = getattr(exc, "strerror", None) or str(exc) or "the connection failed"
    return " ".join(str(text).split())[:120]


# --- writing results ------------------------------------------------------------------------


def _where(dest: Target) -> Path:
    return dest.path if isinstance(dest, volume.VolumePath) else dest


@contextlib.contextmanager
def _atomic_write(dest: Target) -> Iterator[IO[bytes]]:
    """Write to a temporary name beside dest, then rename: never a half-written file.

    On the volume, handlers.volume does it without following links (see there); the job's own
    directory is private to the job, so a plain path is enough.
    """
    if isinstance(dest, volume.VolumePath):
        with volume.atomic_writer(dest) as out:
            yield out
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.part")
    try:
        with tmp.open("w+b") as out:  # readable too: _HashingWriter reads parts back
            yield out
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def copy_file(source: Path, dest: Target) -> None:
    """Copy into place atomically (the volume is shared: readers never see a partial file)."""
    with source.open("rb") as src, _atomic_write(dest) as out:
        shutil.copyfileobj(src, out, _CHUNK)


def presign(client: Any, location: S3Location, expires_s: int) -> str:
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": location.bucket, "Key": location.key}, ExpiresIn=expires_s
    )
    return url


def deliver(
    path: Path,
    destination: str | None,
    field: str,
    job_input: Mapping[str, Any],
    config: HandlerConfig,
    job_secrets: list[str],
    *,
    job_id: str,
    expires_s: int = 3600,
) -> dict[str, Any]:
    """Put a result file where it was asked for, or inline when small enough.

    Returns the output fields: `base64` inline; or `destination` and `url` (s3, presigned) or
    `path` (volume). Too big for inline without a destination: the volume when attached, else
    a clear error saying to give one.
    """
    size = path.stat().st_size
    if destination is None:
        if size <= config.inline_max_bytes:
            return {"base64": base64.b64encode(path.read_bytes()).decode(), "bytes": size}
        if not config.volume.is_dir():
            raise JobError(
                f"the result is {size / 1e6:.1f} MB, over the "
                f"{config.inline_max_bytes / 1e6:.0f} MB "
                f"that fit in a RunPod response; give {field} (s3://bucket/key or volume://path)"
            )
        destination = f"volume://{OUTPUTS}/{_safe_name(job_id)}/{path.name}"
    scheme = scheme_of(destination, field, ("s3", "volume"))
    if scheme == "volume":
        dest = volume.parse(destination, field, config)
        copy_file(path, dest)
        return {"destination": destination, "path": str(dest.path), "bytes": size}
    location = parse_s3(destination, field)
    if not location.key or location.key.endswith("/"):
        location = S3Location(location.bucket, location.key + path.name)
    client = s3_client(credentials_for(job_input, config, job_secrets))
    try:
        client.upload_file(str(path), location.bucket, location.key, Config=transfer_config())
        url = presign(client, location, expires_s)
    except Exception as exc:
        raise s3_error(exc, location) from None
    return {"destination": str(location), "url": url, "bytes": size}


def _safe_name(text: str) -> str:
    kept = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in text)
    return kept.strip(".")[:100] or "job"


def _short(value: str) -> str:
    return repr(value if len(value) <= 120 else value[:117] + "...")
