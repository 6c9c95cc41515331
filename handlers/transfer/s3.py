"""S3-compatible stores: whose credentials, a client, its errors in one sentence, presigning.

boto3 is imported inside the functions: this module is imported before anything is
installed (the storage handler's settings, the error path of a failed start).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from .. import netguard
from ..config import BucketCredentials, HandlerConfig
from ..errors import JobError
from ..redaction import reason, redact, short, shown_url
from ..validation import Field, validate
from .locations import S3Location


def credentials_for(
    job_input: Mapping[str, Any], config: HandlerConfig, job_secrets: list[str]
) -> BucketCredentials:
    """The job's own credentials if it gives them, else the worker's BUCKET_* settings.

    A job's own endpoint obeys the rules of URL sources: http(s) only, and a public address
    unless RUNPOD_SLIM_ALLOW_PRIVATE_URLS is set (s3_client connects to the address checked).
    JobContext.credentials() calls this once per job and keeps the answer.
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
    return worker_credentials(config)


def worker_credentials(config: HandlerConfig) -> BucketCredentials:
    """The endpoint's own BUCKET_* credentials; a JobError saying what to set without them."""
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
        guard = netguard.Guard(
            field, short(shown_url(credentials.endpoint_url)), credentials.allow_private
        )
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
        raise JobError(f"cannot use these S3 credentials: {reason(exc)}") from None
    if guard is not None:
        netguard.pin_boto3_client(client, guard)
    return client


def transfer_config() -> Any:
    """boto3's transfer settings for every upload and download of a job."""
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
    message = error.get("Message") or redact(reason(exc), ())
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


def presign(client: Any, location: S3Location, expires_s: int) -> str:
    """A GET URL for the object, valid for `expires_s` seconds."""
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": location.bucket, "Key": location.key}, ExpiresIn=expires_s
    )
    return url
