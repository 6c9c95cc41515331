"""Storage handler throughput against boto3 alone, on the same real S3 server, in one run.

    python3 bench/bench_storage.py [--mib 256] [--rounds 3]

Starts a throwaway Ceph radosgw on 127.0.0.1 (scripts/install-test-deps.sh installs it),
writes a file of random bytes to a volume directory, then alternates, `rounds` times:
  upload    boto3 upload_file (same TransferConfig)  vs  storage copy volume:// -> s3://
  download  boto3 download_file                       vs  storage copy s3:// -> volume://
The handler runs through handler.py's adapter, as the SDK calls it; its copy also computes
the sha256 it returns. Reports MB/s (best of rounds) and handler/boto3 ratios (target >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, report

sys.path.insert(0, str(REPO))
from handler import adapt
from handlers.config import load_config
from handlers.storage import StorageHandler
from handlers.transfer import s3_client, transfer_config
from tests.support.radosgw import RadosGateway


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.mib * 2**20
    with (
        tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp,
        RadosGateway(Path(tmp)) as server,
    ):
        volume = Path(tmp) / "volume"
        volume.mkdir()
        with (volume / "payload.bin").open("wb") as out:
            for _ in range(args.mib):
                out.write(os.urandom(2**20))
        config = load_config(
            {
                "RUNPOD_SLIM_VOLUME": str(volume),
                "RUNPOD_SLIM_CACHE": str(Path(tmp) / "cache"),
                "BUCKET_ENDPOINT_URL": server.endpoint_url,
                "BUCKET_ACCESS_KEY_ID": server.access_key,
                "BUCKET_SECRET_ACCESS_KEY": server.secret_key,
            }
        )
        assert config.bucket is not None
        client = s3_client(config.bucket)
        client.create_bucket(Bucket="bench")
        job = adapt(StorageHandler(config), lambda job, message: None)

        def handler_copy(source: str, destination: str) -> None:
            result: dict[str, Any] = asyncio.run(
                job(
                    {
                        "id": "bench",
                        "input": {"action": "copy", "source": source, "destination": destination},
                    }
                )
            )
            if "error" in result:
                raise SystemExit(result["error"])

        timings: dict[str, list[float]] = {
            k: [] for k in ("boto3_up", "handler_up", "boto3_down", "handler_down")
        }
        for _ in range(args.rounds):
            for name, action in (
                (
                    "boto3_up",
                    lambda: client.upload_file(
                        str(volume / "payload.bin"), "bench", "a.bin", Config=transfer_config()
                    ),
                ),
                ("handler_up", lambda: handler_copy("volume://payload.bin", "s3://bench/b.bin")),
                (
                    "boto3_down",
                    lambda: client.download_file(
                        "bench", "a.bin", str(volume / "a.bin"), Config=transfer_config()
                    ),
                ),
                ("handler_down", lambda: handler_copy("s3://bench/b.bin", "volume://b.bin")),
            ):
                began = time.perf_counter()
                action()
                timings[name].append(time.perf_counter() - began)
    mbps = {k: round(size / 1e6 / min(v), 1) for k, v in timings.items()}
    report(
        "storage_throughput",
        {
            "command": f"python3 bench/bench_storage.py --mib {args.mib} --rounds {args.rounds}",
            "object_mib": args.mib,
            "rounds": args.rounds,
            "mb_per_s_best": mbps,
            "upload_ratio": round(mbps["handler_up"] / mbps["boto3_up"], 2),
            "download_ratio": round(mbps["handler_down"] / mbps["boto3_down"], 2),
            "target_ratio_min": 0.9,
            "note": "the handler's copy also computes the sha256 it returns",
        },
    )


if __name__ == "__main__":
    main()
