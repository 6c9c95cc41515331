"""Results of any size, without a bucket: RunPod's limits, offload to the volume, refusals,
presigned PUT URLs (to a loopback server the test runs), and the streamed-chunk check."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.errors import SettingsError
from handlers.base import JobContext
from handlers.config import HandlerConfig, load_config
from handlers.errors import JobError
from handlers.transfer import check_stream_chunk, inline_limit

MB = 10**6
# 19.5 MB: over /runsync's 20 MB once base64 (26 MB), whatever RUNPOD_SLIM_INLINE_MAX_MB says.
NINETEEN_AND_A_HALF = 19_500_000


def config_for(tmp_path: Path, volume: bool = True, **env: str) -> HandlerConfig:
    place = tmp_path / "volume"
    if volume:
        place.mkdir(exist_ok=True)
    return load_config({"RUNPOD_SLIM_VOLUME": str(place), **env})


def job_for(config: HandlerConfig, tmp_path: Path, job_id: str = "job-1") -> JobContext:
    return JobContext(job_id, {}, tmp_path / "work", config)


def result_of(tmp_path: Path, size: int, name: str = "result.bin") -> tuple[Path, str]:
    """A file of `size` bytes that is not one repeated byte; (path, sha256)."""
    path = tmp_path / name
    block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    return path, digest.hexdigest()


def test_the_inline_limit_never_exceeds_what_runsync_takes(tmp_path: Path) -> None:
    assert inline_limit(config_for(tmp_path)) == 7 * MB  # base64: 9.33 MB, under /run's 10
    raised = config_for(tmp_path, RUNPOD_SLIM_INLINE_MAX_MB="30")
    assert inline_limit(raised) == 14_925_000  # base64 19.9 MB + 0.1 MB for the rest


def test_a_result_that_fits_comes_back_inline_to_the_byte(tmp_path: Path) -> None:
    path, _ = result_of(tmp_path, 7 * MB)
    out = job_for(config_for(tmp_path), tmp_path).deliver(path, None)
    assert out == {"base64": base64.b64encode(path.read_bytes()).decode(), "bytes": 7 * MB}


def test_19_5_mb_goes_to_the_volume_whatever_the_inline_setting(tmp_path: Path) -> None:
    path, digest = result_of(tmp_path, NINETEEN_AND_A_HALF)
    config = config_for(tmp_path, RUNPOD_SLIM_INLINE_MAX_MB="30")
    out = job_for(config, tmp_path, "job 19").deliver(path, None)
    landed = tmp_path / "volume" / "runpod-slim-outputs" / "job_19" / "result.bin"
    assert out == {
        "destination": "volume://runpod-slim-outputs/job_19/result.bin",
        "path": str(landed.resolve()),
        "bytes": NINETEEN_AND_A_HALF,
        "offloaded": "the result is 19.5 MB, over the 14.9 MB returned inline "
        "(RUNPOD_SLIM_INLINE_MAX_MB; RunPod takes 10 MB on /run, 20 MB on /runsync)",
    }
    assert hashlib.sha256(landed.read_bytes()).hexdigest() == digest


def test_the_results_setting_wins_over_the_volumes_outputs_folder(tmp_path: Path) -> None:
    path, digest = result_of(tmp_path, 8 * MB)
    config = config_for(tmp_path, RUNPOD_SLIM_RESULTS_URL="volume://big/results/")
    out = job_for(config, tmp_path).deliver(path, None)
    assert out["destination"] == "volume://big/results/job-1/result.bin"
    assert out["offloaded"].startswith("the result is 8.0 MB, over the 7.0 MB returned inline")
    landed = tmp_path / "volume" / "big" / "results" / "job-1" / "result.bin"
    assert hashlib.sha256(landed.read_bytes()).hexdigest() == digest
    assert not (tmp_path / "volume" / "runpod-slim-outputs").exists()


NOWHERE = (
    "the result {what} 19.5 MB, over the 7.0 MB that fit inline in a RunPod response, and "
    "this worker has nowhere to put it: give input.destination (s3://bucket/key, "
    "volume://path or an https:// presigned PUT URL), or set RUNPOD_SLIM_RESULTS_URL on the "
    "endpoint"
)


def test_19_5_mb_with_nowhere_to_go_is_refused_in_one_sentence(tmp_path: Path) -> None:
    path, _ = result_of(tmp_path, NINETEEN_AND_A_HALF)
    job = job_for(config_for(tmp_path, volume=False), tmp_path)
    with pytest.raises(JobError) as caught:
        job.deliver(path, None)
    assert str(caught.value) == NOWHERE.format(what="is")


def test_a_job_whose_result_cannot_go_anywhere_is_refused_before_its_work(
    tmp_path: Path,
) -> None:
    nowhere = job_for(config_for(tmp_path, volume=False), tmp_path)
    with pytest.raises(JobError) as caught:
        nowhere.check_destination(None, most_bytes=NINETEEN_AND_A_HALF)
    assert str(caught.value) == NOWHERE.format(what="may be up to")
    nowhere.check_destination(None, most_bytes=7 * MB)  # fits inline
    nowhere.check_destination(None)  # cannot be bounded: decided when it is made
    nowhere.check_destination("https://bucket.example/put?X-Amz-Signature=abc")
    with pytest.raises(JobError, match=r"^input.destination='ftp://x/y' has scheme 'ftp'"):
        nowhere.check_destination("ftp://x/y")
    job_for(config_for(tmp_path), tmp_path).check_destination(None, most_bytes=10**12)


def test_a_presigned_put_url_gets_the_bytes_and_never_shows_its_signature(
    tmp_path: Path, put_server: PutServer
) -> None:
    path, digest = result_of(tmp_path, 3 * MB + 5)
    config = config_for(tmp_path, RUNPOD_SLIM_ALLOW_PRIVATE_URLS="1")
    url = f"{put_server.url}/bucket/out.bin?X-Amz-Signature=SIGNED&X-Amz-Credential=AK"
    out = job_for(config, tmp_path).deliver(path, url)
    assert out == {"destination": f"{put_server.url}/bucket/out.bin", "bytes": 3 * MB + 5}
    assert put_server.received == [("/bucket/out.bin", str(3 * MB + 5), digest)]

    put_server.answer = 403
    with pytest.raises(JobError) as caught:
        job_for(config, tmp_path).deliver(path, url, field="input.audio_url")
    assert str(caught.value) == (
        f"input.audio_url: '{put_server.url}/bucket/out.bin' answered HTTP 403 Forbidden "
        "(SignatureDoesNotMatch) to the upload"
    )


def test_a_put_url_to_a_private_address_is_refused_before_connecting(
    tmp_path: Path, put_server: PutServer
) -> None:
    path, _ = result_of(tmp_path, 10)
    url = f"{put_server.url}/bucket/out.bin?X-Amz-Signature=SIGNED"
    with pytest.raises(JobError) as caught:
        job_for(config_for(tmp_path), tmp_path).deliver(path, url)
    assert str(caught.value) == (
        f"input.destination='{put_server.url}/bucket/out.bin' points to a private or local "
        "address (127.0.0.1); refused. Set RUNPOD_SLIM_ALLOW_PRIVATE_URLS=1 to allow it"
    )
    assert put_server.received == [] and put_server.connections == 0


def test_a_streamed_chunk_is_checked_against_runpods_1_mb() -> None:
    fits = {"chunk": 1, "audio_base64": "A" * 999_900}
    assert check_stream_chunk(fits) == len(b'{"chunk": 1, "audio_base64": ""}') + 999_900
    with pytest.raises(JobError) as caught:
        check_stream_chunk({"chunk": 2, "audio_base64": "A" * 1_000_000}, "chunk 2")
    assert str(caught.value) == (
        "chunk 2 is 1.00 MB as JSON, over the 1 MB RunPod takes per streamed chunk"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "ftp://x/y",
            "RUNPOD_SLIM_RESULTS_URL='ftp://x/y' is not valid: s3://bucket/prefix or "
            "volume://folder (where results too big to return go)",
        ),
        (
            "s3://results/big",
            "RUNPOD_SLIM_RESULTS_URL='s3://results/big' is not valid: an s3:// place needs "
            "BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY set too",
        ),
        (
            "volume://../etc",
            "RUNPOD_SLIM_RESULTS_URL='volume://../etc' is not valid: a relative volume:// "
            "folder without '..'",
        ),
    ],
)
def test_a_bad_results_setting_stops_the_worker_with_one_sentence(value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_config({"RUNPOD_SLIM_RESULTS_URL": value})
    assert str(caught.value) == message


# --- a presigned-PUT stand-in on loopback: the test's own listener ---------------------------


class PutServer:
    """Takes PUTs, keeps (path, Content-Length, sha256 of the body); answers `answer`."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, str]] = []
        self.connections = 0
        self.answer = 200
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["Content-Length"])
                digest = hashlib.sha256()
                left = length
                while left:
                    piece = self.rfile.read(min(left, 1 << 20))
                    digest.update(piece)
                    left -= len(piece)
                if owner.answer == 200:
                    owner.received.append(
                        (
                            self.path.split("?")[0],
                            self.headers["Content-Length"],
                            digest.hexdigest(),
                        )
                    )
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
                self.send_response(owner.answer)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def get_request(self) -> tuple[socket.socket, object]:
                owner.connections += 1
                return super().get_request()

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def put_server() -> Iterator[PutServer]:
    server = PutServer()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(timeout=10)


def test_a_whole_output_over_runs_10_mb_goes_to_the_results_place(tmp_path: Path) -> None:
    small = {"text": "hello", "segments": []}
    job = job_for(config_for(tmp_path), tmp_path, "long-talk")
    assert job.fit_output(small) is small
    words = [{"word": "w" * 90, "start": 1.0, "end": 1.5}] * 110_000  # 12.1 MB as JSON
    output = {"text": "talk", "words": words}
    size = len(json.dumps(output).encode())
    fitted = job.fit_output(output)
    landed = tmp_path / "volume" / "runpod-slim-outputs" / "long-talk" / "output.json"
    assert fitted == {
        "destination": "volume://runpod-slim-outputs/long-talk/output.json",
        "path": str(landed.resolve()),
        "bytes": size,
        "offloaded": f"the job's output is {size / 1e6:.1f} MB as JSON, over the 10 MB "
        "RunPod takes on /run",
    }
    assert json.loads(landed.read_bytes()) == output
    assert not (tmp_path / "work" / "output.json").exists()


def test_a_whole_output_with_nowhere_to_go_is_kept_up_to_runsyncs_20_mb(tmp_path: Path) -> None:
    job = job_for(config_for(tmp_path, volume=False), tmp_path)
    twelve = {"words": ["w" * 100] * 118_000}  # 12.4 MB: /runsync takes it
    assert job.fit_output(twelve) is twelve
    with pytest.raises(JobError) as caught:
        job.fit_output({"words": ["w" * 100] * 200_000})
    assert str(caught.value) == (
        "the job's output is 20.8 MB as JSON, over the 20 MB RunPod takes, and this worker has "
        "nowhere to put it: set RUNPOD_SLIM_RESULTS_URL on the endpoint, or attach a network "
        "volume"
    )


def test_an_offload_that_fails_names_the_workers_setting_not_a_job_field(tmp_path: Path) -> None:
    path, _ = result_of(tmp_path, 8 * MB)
    config = config_for(tmp_path, RUNPOD_SLIM_RESULTS_URL="volume://linked")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "volume" / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(JobError) as caught:
        job_for(config, tmp_path).deliver(path, None)
    assert str(caught.value) == (
        "RUNPOD_SLIM_RESULTS_URL='volume://linked/job-1/result.bin' leads through a symbolic "
        "link ('linked'); links on the volume are not followed"
    )
    assert list((tmp_path / "elsewhere").iterdir()) == []
