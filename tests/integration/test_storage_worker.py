"""The storage worker run as users run it: `--test_input`, and the SDK's local API server.

The bootstrap installs the storage env into a cache for this module (a real install from the
package index), then the worker serves jobs against the real S3 server.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from handlers.harness import REPO, local_api, run_one_job
from tests.support.radosgw import RadosGateway

pytest_plugins = ["tests.support.s3_fixture"]


@pytest.fixture(scope="module")
def worker_env(s3_server: RadosGateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("storage-worker")
    (base / "volume").mkdir()
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_SLIM_", "BUCKET_"))},
        "HANDLER_TYPE": "storage",
        "RUNPOD_SLIM_VOLUME": str(base / "volume"),
        "RUNPOD_SLIM_CACHE": str(base / "cache"),
        "BUCKET_ENDPOINT_URL": s3_server.endpoint_url,
        "BUCKET_ACCESS_KEY_ID": s3_server.access_key,
        "BUCKET_SECRET_ACCESS_KEY": s3_server.secret_key,
    }


def test_test_input_runs_one_job(worker_env: dict[str, str], s3_bucket: str) -> None:
    job = {
        "input": {
            "action": "copy",
            "source_base64": base64.b64encode(b"hi").decode(),
            "destination": f"s3://{s3_bucket}/hi.txt",
        }
    }
    code, log = run_one_job(worker_env, job["input"])
    assert code == 0, log[-4000:]
    assert "Job local_test completed successfully." in log
    assert "'sha256': '8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4'" in log
    assert worker_env["BUCKET_SECRET_ACCESS_KEY"] not in log


def test_local_api_serves_concurrent_jobs_and_survives_bad_ones(
    worker_env: dict[str, str], s3_bucket: str, s3_client: object
) -> None:
    payloads = {f"obj-{i}.bin": os.urandom(1000 + i) for i in range(8)}
    with local_api(worker_env) as api:

        def copy(name: str) -> dict[str, object]:
            return api.runsync(
                {
                    "action": "copy",
                    "source_base64": base64.b64encode(payloads[name]).decode(),
                    "destination": f"s3://{s3_bucket}/{name}",
                }
            )

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(copy, payloads))
        assert all(r["status"] == "COMPLETED" for r in results), results
        assert sorted(r["output"]["destination"] for r in results) == sorted(  # type: ignore[index]
            f"s3://{s3_bucket}/{name}" for name in payloads
        )
        bad = api.runsync(
            {"action": "copy", "source": "file:///etc/passwd", "destination": "volume://x"}
        )
        assert bad["status"] == "FAILED"
        assert bad["error"] == (
            "input.source='file:///etc/passwd' has scheme 'file'; allowed: https://, http://, "
            "s3://, volume://"
        )
        listing = api.runsync({"action": "list", "source": f"s3://{s3_bucket}/obj-"})
        assert listing["status"] == "COMPLETED"
        assert len(listing["output"]["entries"]) == 8  # type: ignore[index]
    for name, data in payloads.items():
        body = s3_client.get_object(Bucket=s3_bucket, Key=name)["Body"].read()  # type: ignore[attr-defined]
        assert body == data


def test_run_examples_script_runs_every_example_through_the_local_api(
    worker_env: dict[str, str],
) -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/run_examples.py", "storage"],
        cwd=REPO,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stdout.strip().endswith("4 passed, 0 failed")
    assert '"destination": "volume://examples/hello.txt"' in proc.stdout


def test_no_secret_or_signature_reaches_the_workers_log_or_errors(
    worker_env: dict[str, str], s3_bucket: str
) -> None:
    canary = "CANARY-SECRET-7f3a9c"
    with local_api(worker_env) as api:
        copied = api.runsync(
            {
                "action": "copy",
                "source_base64": base64.b64encode(b"signed").decode(),
                "destination": f"s3://{s3_bucket}/signed.txt",
            }
        )
        url = copied["output"]["url"]  # type: ignore[index]
        signature = url.split("X-Amz-Signature=", 1)[1].split("&", 1)[0]
        presigned = api.runsync({"action": "presign", "source": f"s3://{s3_bucket}/signed.txt"})
        other = presigned["output"]["url"].split("X-Amz-Signature=", 1)[1]  # type: ignore[index]
        answers = [
            api.runsync(  # a secret given as a non-string
                {
                    "action": "stat",
                    "source": f"s3://{s3_bucket}/signed.txt",
                    "credentials": {"access_key_id": "k", "secret_access_key": {"x": canary}},
                }
            ),
            api.runsync({"action": "stat", "source": "s3://b/k", "credentials": canary}),
            api.runsync(  # a signed URL as a source: its query appears in no line
                {
                    "action": "copy",
                    "source": f"http://127.0.0.1:9/x.bin?X-Amz-Signature={canary}",
                    "destination": "volume://x.bin",
                }
            ),
            api.runsync(
                {
                    "action": "copy",
                    "source": f"https://user:{canary}@example.invalid/x",
                    "destination": "volume://x.bin",
                }
            ),
        ]
        log = api.log()
    assert all(a["status"] == "FAILED" for a in answers), answers
    for text in (str(answers), log):
        assert canary not in text
    assert signature not in log and other not in log
    assert "fetching http://127.0.0.1:9/x.bin?..." in log  # the progress line, redacted
