"""The storage handler's lifecycle and its actions (files between URLs, buckets, the volume).

Actions, chosen by "action":
  copy     source (https/s3/volume URL) or source_base64 -> destination (s3://, volume://, or
           an https:// presigned PUT URL)
  presign  source (s3 object) -> a GET URL valid for expires_s
  list     source (s3 prefix or volume dir) -> entries, paginated by limit and cursor
  stat     source (s3 object or volume file) -> size, modified
  delete   source (s3 object or volume file)
  cache    the bootstrap's envs on the volume, with sizes and last use; prune on request
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from bootstrap.fetch import sha256_of

from .. import volume
from ..base import Handler, JobContext
from ..config import HandlerConfig
from ..errors import JobError
from ..transfer import (
    DESTINATION_SCHEMES,
    Target,
    copy_file,
    parse_s3,
    presign,
    s3_client,
    s3_error,
    scheme_of,
    shown_url,
)
from ..validation import Field, validate
from . import settings as storage_settings
from .fields import ACTIONS, Cache, Copy, Listing, OneSource, Presign, parse
from .settings import StorageSettings


class StorageHandler(Handler):
    """Moves and inspects files; no model, nothing to set up."""

    name: ClassVar[str] = "storage"
    profile: ClassVar[str] = "storage"
    examples: ClassVar[tuple[Mapping[str, Any], ...]] = (
        {
            "action": "copy",
            "source_base64": "aGVsbG8gZnJvbSBydW5wb2Qtc2xpbQo=",
            "destination": "volume://examples/hello.txt",
        },
        {"action": "stat", "source": "volume://examples/hello.txt"},
        {"action": "list", "source": "volume://examples"},
        {"action": "cache"},
    )

    def __init__(self, config: HandlerConfig, settings: StorageSettings | None = None) -> None:
        super().__init__(config)
        self.settings = settings if settings is not None else storage_settings.load(os.environ)

    async def run(self, job: JobContext) -> dict[str, Any]:
        action = job.input.get("action")
        if action not in ACTIONS:
            validate({"action": action}, {"action": Field(str, required=True, choices=ACTIONS)})
        given = {k: v for k, v in job.input.items() if k != "action"}
        args = parse(str(action), given, self.settings.expires_s)
        work = getattr(self, f"_{action}")
        # A copy's download checks the deadline itself; an S3 transfer cannot be stopped
        # midway from outside (boto3 has no cancel), so its thread may outlive the job.
        result: dict[str, Any] = await job.within_time(asyncio.to_thread(work, job, args))
        return {"action": action, **result}

    # Each action runs in a worker thread: boto3 and file I/O block.

    def _copy(self, job: JobContext, args: Copy) -> dict[str, Any]:
        destination = args.destination
        to_volume = scheme_of(destination, "input.destination", DESTINATION_SCHEMES) == "volume"
        # Bytes for the volume land at their final path at once (atomically): no second copy.
        target: Target
        if to_volume:
            target = volume.parse(destination, "input.destination", job.config)
            volume.check_destination(target)
        else:
            # A PUT URL's query is its signature: the file is named from the path alone.
            target = job.workdir / _basename(destination.split("?", 1)[0])
        local, digest = job.fetch("source", args.source, args.source_base64, target)
        if isinstance(target, volume.VolumePath):
            if digest is None:  # a volume:// source, read in place
                digest = sha256_of(local)
                copy_file(local, target)
            size = target.path.stat().st_size
            return {"destination": destination, "bytes": size, "sha256": digest}
        job.progress(f"uploading to {shown_url(destination)}")
        with ThreadPoolExecutor(max_workers=1) as pool:
            # A volume:// source is hashed while it uploads: both read it from the page cache.
            hashing = pool.submit(sha256_of, local) if digest is None else None
            delivered = job.deliver(local, destination, expires_s=args.expires_s)
            if hashing is not None:
                digest = hashing.result()
        return {**delivered, "sha256": digest}

    def _presign(self, job: JobContext, args: Presign) -> dict[str, Any]:
        location = parse_s3(args.source, "input.source")
        client = s3_client(job.credentials())
        try:
            client.head_object(Bucket=location.bucket, Key=location.key)
        except Exception as exc:
            raise s3_error(exc, location) from None
        return {
            "source": str(location),
            "url": presign(client, location, args.expires_s),
            "expires_s": args.expires_s,
        }

    def _list(self, job: JobContext, args: Listing) -> dict[str, Any]:
        source = args.source
        if scheme_of(source, "input.source", ("s3", "volume")) == "volume":
            return _list_volume(volume.parse(source, "input.source", job.config), args)
        location = parse_s3(source, "input.source")
        client = s3_client(job.credentials())
        request: dict[str, Any] = {
            "Bucket": location.bucket,
            "Prefix": location.key,
            "MaxKeys": args.limit,
        }
        if args.cursor:
            request["ContinuationToken"] = args.cursor
        try:
            page = client.list_objects_v2(**request)
        except Exception as exc:
            raise s3_error(exc, location) from None
        entries = [
            {
                "name": item["Key"],
                "size": item["Size"],
                "modified": item["LastModified"].isoformat(),
            }
            for item in page.get("Contents", [])
        ]
        return {
            "source": source,
            "entries": entries,
            "next_cursor": page.get("NextContinuationToken") if page.get("IsTruncated") else None,
        }

    def _stat(self, job: JobContext, args: OneSource) -> dict[str, Any]:
        source = args.source
        if scheme_of(source, "input.source", ("s3", "volume")) == "volume":
            info = volume.lstat(volume.parse(source, "input.source", job.config))
            if info is None:
                raise JobError(f"input.source={volume.shorten(source)}: no such file on the volume")
            return {
                "source": source,
                "size": info.st_size,
                "modified": _iso(info.st_mtime),
                "type": volume.kind(info),
            }
        location = parse_s3(source, "input.source")
        client = s3_client(job.credentials())
        try:
            head = client.head_object(Bucket=location.bucket, Key=location.key)
        except Exception as exc:
            raise s3_error(exc, location) from None
        return {
            "source": source,
            "size": head["ContentLength"],
            "modified": head["LastModified"].isoformat(),
            "etag": head["ETag"].strip('"'),
            "type": "file",
        }

    def _delete(self, job: JobContext, args: OneSource) -> dict[str, Any]:
        source = args.source
        if scheme_of(source, "input.source", ("s3", "volume")) == "volume":
            volume.unlink(volume.parse(source, "input.source", job.config))
            return {"source": source, "deleted": True}
        location = parse_s3(source, "input.source")
        client = s3_client(job.credentials())
        try:
            client.head_object(Bucket=location.bucket, Key=location.key)
            client.delete_object(Bucket=location.bucket, Key=location.key)
        except Exception as exc:
            raise s3_error(exc, location) from None
        return {"source": source, "deleted": True}

    def _cache(self, job: JobContext, args: Cache) -> dict[str, Any]:
        from bootstrap.cache import Layout
        from bootstrap.prune import list_envs, prune

        layout = Layout(job.config.cache_root)
        removed: list[str] = []
        if args.prune:
            keep = args.keep or job.config.keep_envs
            removed = prune(layout, keep, dry_run=args.dry_run, log=lambda line: None)
        envs = [
            {
                "key": e.key,
                "size_bytes": e.manifest.get("size_bytes"),
                "last_used": _iso(e.last_used),
                "in_use": e.in_use,
            }
            for e in list_envs(layout)
        ]
        return {
            "cache_root": str(job.config.cache_root),
            "envs": envs,
            "removed": removed,
            "dry_run": args.dry_run,
        }


def _list_volume(folder: volume.VolumePath, args: Listing) -> dict[str, Any]:
    # Links are listed as links (their own size and time), never followed: a dangling one is
    # just an entry, and one pointing out of the volume tells nothing about its target.
    found = sorted(volume.entries(folder))
    start = 0
    if args.cursor:
        cursor = args.cursor
        start = next((i for i, (n, _) in enumerate(found) if n > cursor), len(found))
    page = found[start : start + args.limit]
    entries = [
        {
            "name": name,
            "size": info.st_size,
            "modified": _iso(info.st_mtime),
            "type": volume.kind(info),
        }
        for name, info in page
    ]
    more = start + args.limit < len(found)
    return {
        "source": folder.url,
        "entries": entries,
        "next_cursor": page[-1][0] if more and page else None,
    }


def _basename(location: str) -> str:
    name = location.rstrip("/").rsplit("/", 1)[-1]
    return name or "object"


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
