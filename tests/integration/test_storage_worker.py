"""The storage worker run as users run it: `--test_input`, and the SDK's local API server.

The bootstrap installs the storage env into a cache for this module (a real install from the
package index), then the worker serves jobs against the real S3 server.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from handlers.harness import REPO, LocalApi, local_api, run_one_job
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


@contextlib.contextmanager
def trickling_source() -> Iterator[str]:
    """A loopback HTTP source that sends its headers, then one byte every 0.2 s: a slow job."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                while not stop.wait(0.2):
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/slow.bin"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def job_folders(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("runpod-slim-jobs-*/runpod-slim-job-*"))


def poll(condition: Callable[[], object], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.05)


def start_slow_job(api: LocalApi, source: str) -> tuple[threading.Thread, list[object]]:
    """POST a copy from the trickling source in a thread; its answer lands in the list."""
    answers: list[object] = []

    def call() -> None:
        try:
            answers.append(
                api.runsync({"action": "copy", "source": source, "destination": "volume://s.bin"})
            )
        except OSError as exc:  # the server went away without answering
            answers.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, answers


def test_sigterm_mid_job_stops_the_job_and_leaves_no_job_folder(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**worker_env, "TMPDIR": str(tmp), "RUNPOD_SLIM_ALLOW_PRIVATE_URLS": "1"}
    with trickling_source() as source, local_api(env) as api:
        thread, answers = start_slow_job(api, source)
        poll(lambda: job_folders(tmp), "the job's folder")
        api.process.send_signal(signal.SIGTERM)  # RunPod's scale-down
        exit_code = api.process.wait(timeout=30)
        thread.join(timeout=30)
        log = api.log()
    assert exit_code == -signal.SIGTERM, log[-3000:]
    assert answers == [
        {
            "id": answers[0]["id"],  # type: ignore[index]
            "status": "FAILED",
            "error": "the worker was stopped (SIGTERM) before this job ended; nothing was kept "
            "of it: run the job again",
        }
    ]
    assert "SIGTERM: stopping 1 running job(s)" in log
    assert list(tmp.iterdir()) == []


def test_a_killed_workers_job_folders_go_at_the_next_start(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**worker_env, "TMPDIR": str(tmp), "RUNPOD_SLIM_ALLOW_PRIVATE_URLS": "1"}
    # The first worker lives throughout: a live worker's folder is never swept.
    with trickling_source() as source, local_api(env) as alive:
        with local_api(env) as killed:
            start_slow_job(killed, source)
            poll(lambda: job_folders(tmp), "the job's folder")
            left = job_folders(tmp)[0].parent
            killed.process.send_signal(signal.SIGKILL)  # no handler runs
            killed.process.wait(timeout=30)
        assert left.is_dir()
        with local_api(env) as after:
            assert not left.exists(), after.log()[-3000:]
            assert f"removed the job folders of a worker that is gone: {left}" in after.log()
            mine = [p for p in tmp.iterdir() if p.name.startswith("runpod-slim-jobs-")]
            assert len(mine) == 2  # the live worker's and this one's
        assert alive.runsync({"action": "list", "source": "volume://"})["status"] == "COMPLETED"
    assert list(tmp.iterdir()) == []
