"""handlers.transfer without a network: volume paths, base64, inline-or-volume delivery."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from handlers.base import JobContext
from handlers.config import HandlerConfig, load_config
from handlers.errors import JobError
from handlers.transfer import credentials_for, decode_base64, redact, s3_client, volume_path


def config_for(tmp_path: Path, **env: str) -> HandlerConfig:
    volume = tmp_path / "volume"
    volume.mkdir(exist_ok=True)
    return load_config({"RUNPOD_SLIM_VOLUME": str(volume), **env})


def job_for(config: HandlerConfig, tmp_path: Path, job_id: str = "j") -> JobContext:
    return JobContext(job_id, {}, tmp_path / "work", config)


def test_volume_paths_stay_inside(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    assert (
        volume_path("volume://a/b.txt", "f", config)
        == (tmp_path / "volume" / "a" / "b.txt").resolve()
    )
    assert volume_path("volume://", "f", config) == (tmp_path / "volume").resolve()  # its root
    for bad in ("volume:///etc", "volume://a/../../etc", "s3://b/k", "volume://.runpod-slim/x"):
        with pytest.raises(JobError):
            volume_path(bad, "f", config)


def test_no_volume_attached_is_said(tmp_path: Path) -> None:
    config = load_config({"RUNPOD_SLIM_VOLUME": str(tmp_path / "missing")})
    with pytest.raises(JobError, match=r"no network volume is attached at .*missing"):
        volume_path("volume://x", "input.destination", config)


def test_base64_data_url_and_sha(tmp_path: Path) -> None:
    data = b"\x00binary\xff"
    encoded = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    path, sha = decode_base64(encoded, "f", tmp_path / "out.bin", config_for(tmp_path))
    assert path.read_bytes() == data
    assert sha == hashlib.sha256(data).hexdigest()


def test_small_results_come_back_inline(tmp_path: Path) -> None:
    result = tmp_path / "r.txt"
    result.write_bytes(b"small")
    out = job_for(config_for(tmp_path), tmp_path).deliver(result, None)
    assert out == {"base64": base64.b64encode(b"small").decode(), "bytes": 5}


def test_large_results_go_to_the_volume_or_say_where_to_send_them(tmp_path: Path) -> None:
    result = tmp_path / "big.bin"
    result.write_bytes(b"x" * 2_000_001)
    config = config_for(tmp_path, RUNPOD_SLIM_INLINE_MAX_MB="2")
    out = job_for(config, tmp_path, "job-7").deliver(result, None)
    assert out["destination"] == "volume://runpod-slim-outputs/job-7/big.bin"
    assert Path(out["path"]).read_bytes() == result.read_bytes()
    no_volume = load_config(
        {"RUNPOD_SLIM_VOLUME": str(tmp_path / "none"), "RUNPOD_SLIM_INLINE_MAX_MB": "2"}
    )
    with pytest.raises(JobError) as info:
        job_for(no_volume, tmp_path).deliver(result, None)
    assert str(info.value) == (
        "the result is 2.0 MB, over the 2.0 MB that fit inline in a RunPod response, and this "
        "worker has nowhere to put it: give input.destination (s3://bucket/key, volume://path "
        "or an https:// presigned PUT URL), or set RUNPOD_SLIM_RESULTS_URL on the endpoint"
    )


def test_redact() -> None:
    assert redact("key s3cr3t and s3cr3t again", ["s3cr3t", ""]) == "key *** and *** again"


def test_credentials_repr_hides_the_secret() -> None:
    config = load_config({"BUCKET_ACCESS_KEY_ID": "AK", "BUCKET_SECRET_ACCESS_KEY": "very-secret"})
    assert "very-secret" not in repr(config) and "very-secret" not in repr(config.bucket)


@pytest.mark.parametrize(
    ("credentials", "error"),
    [
        (
            {"endpoint_url": "http://[::1", "access_key_id": "k", "secret_access_key": "s"},
            "input.credentials.endpoint_url='http://[::1': is not a valid URL; write "
            "https://host[:port]",
        ),
        (
            {"endpoint_url": "ftp://s3.example", "access_key_id": "k", "secret_access_key": "s"},
            "input.credentials.endpoint_url='ftp://s3.example': must be an http:// or https:// "
            "URL with a host, such as https://s3.example.com",
        ),
        (
            {"region": "US EAST", "access_key_id": "k", "secret_access_key": "s"},
            "input.credentials.region='US EAST': is not a region name: lowercase letters, "
            "digits and dashes, such as us-east-1",
        ),
        (
            {"access_key_id": "k", "secret_access_key": {"x": "SECRET-CANARY"}},
            "input.credentials.secret_access_key must be a string, got object (not shown)",
        ),
    ],
)
def test_bad_job_credentials_are_one_clear_sentence(
    tmp_path: Path, credentials: dict[str, object], error: str
) -> None:
    with pytest.raises(JobError) as caught:
        s3_client(credentials_for({"credentials": credentials}, config_for(tmp_path), []))
    assert str(caught.value) == error


def test_redact_hides_signed_url_queries_userinfo_and_job_dirs() -> None:
    text = (
        "fetching https://user:pw@bucket.example/k.mp4?X-Amz-Signature=abc123&X-Amz-Credential=K"
        " into /tmp/runpod-slim-job-x1y2/source failed; key SECRET"
    )
    assert redact(text, ["SECRET"]) == (
        "fetching https://bucket.example/k.mp4?... into source failed; key ***"
    )


def test_a_source_that_trickles_is_cut_off_at_the_jobs_deadline(tmp_path: Path) -> None:
    import socket
    import threading
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:  # headers, then one byte every 0.2 s: every read succeeds
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    config = config_for(tmp_path, RUNPOD_SLIM_ALLOW_PRIVATE_URLS="1", RUNPOD_SLIM_JOB_TIMEOUT_S="2")
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.bin"
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            job_for(config, tmp_path).fetch("source", url, None, tmp_path / "slow.bin")
        except BaseException as exc:
            outcome.append(exc)

    began = time.monotonic()
    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(timeout=15)
    stop.set()
    listener.close()
    assert not worker.is_alive(), "the download ignored the job's deadline"
    assert time.monotonic() - began < 6
    assert [str(e) for e in outcome] == [
        f"input.source: '{url}' did not arrive within the job's time limit "
        "(2 s, RUNPOD_SLIM_JOB_TIMEOUT_S)"
    ]
    assert not (tmp_path / "slow.bin").exists()


def test_every_base64_field_is_capped_in_one_place(tmp_path: Path) -> None:
    job = job_for(config_for(tmp_path), tmp_path)
    too_long = "A" * 20_000_004  # valid base64, one block over the cap
    with pytest.raises(JobError) as caught:
        job.fetch("audio", None, too_long)
    assert str(caught.value) == (
        "input.audio_base64 is 20.0 MB of base64; the limit is 20 MB (what one RunPod request "
        "carries): give a larger file as a URL, s3:// or volume:// location instead"
    )
    assert not (tmp_path / "work" / "audio").exists()
    with pytest.raises(JobError) as caught:
        job.fetch("audio", "https://example.com/a.wav", "AAAA")
    assert str(caught.value) == "give exactly one of input.audio and input.audio_base64"


def test_a_jobs_credentials_are_checked_once_and_kept(tmp_path: Path) -> None:
    given = {"access_key_id": "AKJOB", "secret_access_key": "job-secret", "region": "eu-west-1"}
    job = JobContext("j", {"credentials": given}, tmp_path / "work", config_for(tmp_path))
    first = job.credentials()
    assert job.credentials() is first  # the same checked value: not validated again
    assert (first.access_key_id, first.region, first.job_given) == ("AKJOB", "eu-west-1", True)
    assert job.secrets == ["AKJOB", "job-secret", "eu-west-1"]  # kept once, for redaction
    bad = JobContext("j", {"credentials": {"region": "x"}}, tmp_path / "w", config_for(tmp_path))
    for _ in range(2):
        with pytest.raises(JobError, match=r"^input.credentials.access_key_id is required"):
            bad.credentials()
