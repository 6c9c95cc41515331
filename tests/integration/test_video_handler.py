"""The video handler with real FFmpeg, on small clips the tests make with the env's ffmpeg.

The bootstrap installs the video env into a cache for this module (a real install from the
package index, a few seconds) and activates it, so handlers.video runs as in a worker. Jobs go
through handler.py's adapter, as the RunPod SDK calls them; outputs are probed with PyAV.
The last tests run the worker as users do: `handler.py --test_input`, the SDK's local API
server, and scripts/run_examples.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from handler import adapt, build_handler
from handlers.harness import REPO, local_api, run_one_job
from tests.support.envs import activated_env
from tests.support.http import closed_port_url

Run = Callable[..., dict[str, Any]]
PRESETS = "ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow"


@pytest.fixture(scope="module")
def video_environ(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The worker's environment; the video env installed into its cache and activated here."""
    with activated_env("video", tmp_path_factory.mktemp("video")) as environ:
        yield environ


@pytest.fixture(scope="module")
def volume(video_environ: dict[str, str]) -> Path:
    return Path(video_environ["RUNPOD_SLIM_VOLUME"])


@pytest.fixture(scope="module")
def ffmpeg(video_environ: dict[str, str]) -> str:
    import imageio_ffmpeg

    path: str = imageio_ffmpeg.get_ffmpeg_exe()
    return path


def make_clip(ffmpeg: str, out: Path, seconds: float, *codec_args: str) -> Path:
    """A 320x240 25 fps test pattern with a 440 Hz tone, encoded with `codec_args`."""
    subprocess.run(
        [
            ffmpeg,
            *("-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={seconds}"),
            *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"),
            *codec_args,
            "-shortest",
            str(out),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def clips(ffmpeg: str, volume: Path) -> dict[str, Path]:
    """On the volume: a 3 s h264+aac mp4 (a keyframe each second) and a 2 s vp9+opus webm."""
    folder = volume / "clips"
    folder.mkdir()
    mp4 = ("-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p")
    webm = ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k")
    return {
        "mp4": make_clip(ffmpeg, folder / "clip.mp4", 3, *mp4, "-c:a", "aac"),
        "webm": make_clip(ffmpeg, folder / "clip.webm", 2, *webm, "-c:a", "libopus"),
    }


@pytest.fixture(scope="module")
def handler(video_environ: dict[str, str]) -> Any:
    built = build_handler(video_environ)
    assert built.setup_error is None, built.setup_error
    return built


@pytest.fixture
def messages() -> list[str]:
    return []


@pytest.fixture
def run_job(handler: Any, messages: list[str]) -> Run:
    job = adapt(handler, lambda job, message: messages.append(message))

    def run(**job_input: Any) -> dict[str, Any]:
        result: dict[str, Any] = asyncio.run(job({"id": "test-job", "input": job_input}))
        return result

    return run


def probe(path: Path) -> dict[str, Any]:
    from handlers.video.media import probe as probe_file

    return probe_file(path, "test").as_dict()


def stream(info: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in info["streams"] if s["type"] == kind)
    return found


def image_size(data: bytes, tmp_path: Path, name: str) -> tuple[int, int]:
    import av

    path = tmp_path / name
    path.write_bytes(data)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


def output_bytes(result: dict[str, Any]) -> bytes:
    assert "error" not in result, result["error"]
    if "base64" in result:
        return base64.b64decode(result["base64"])
    return Path(result["path"]).read_bytes()


# --- probe ------------------------------------------------------------------------------------


def test_probe_describes_container_and_streams(run_job: Run, clips: dict[str, Path]) -> None:
    result = run_job(action="probe", video="volume://clips/clip.mp4")
    assert result["action"] == "probe"
    assert result["container"] == "mov,mp4,m4a,3gp,3g2,mj2"
    assert abs(result["duration_s"] - 3) < 0.1
    assert result["size_bytes"] == clips["mp4"].stat().st_size
    video, audio = stream(result, "video"), stream(result, "audio")
    assert (video["codec"], video["width"], video["height"], video["fps"]) == (
        "h264",
        320,
        240,
        25.0,
    )
    assert (audio["codec"], audio["sample_rate"]) == ("aac", 44100)
    webm = run_job(
        action="probe", video_base64=base64.b64encode(clips["webm"].read_bytes()).decode()
    )
    assert webm["container"] == "matroska,webm"
    assert [s["codec"] for s in webm["streams"]] == ["vp9", "opus"]


# --- transcode --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("container", "codec", "encoder", "extra"),
    [
        ("mp4", "h264", "libx264", {"preset": "ultrafast", "crf": 30}),
        ("webm", "vp9", "libvpx-vp9", {"preset": "ultrafast", "bitrate_kbps": 200}),
        ("mkv", "av1", "libsvtav1", {"preset": "ultrafast", "crf": 50}),
        ("mkv", "hevc", "libx265", {"preset": "ultrafast"}),
    ],
)
def test_transcode_to_each_container_and_codec(
    run_job: Run,
    clips: dict[str, Path],
    tmp_path: Path,
    container: str,
    codec: str,
    encoder: str,
    extra: dict[str, Any],
) -> None:
    result = run_job(
        action="transcode",
        video="volume://clips/clip.mp4",
        container=container,
        video_codec=codec,
        width=160,
        encoder="cpu",
        **extra,
    )
    assert "error" not in result, result
    assert result["encoder"] == encoder and result["container"] == container
    out = tmp_path / f"out.{container}"
    out.write_bytes(output_bytes(result))
    info = probe(out)
    video, audio = stream(info, "video"), stream(info, "audio")
    assert video["codec"] == codec and (video["width"], video["height"]) == (160, 120)
    assert audio["codec"] == ("opus" if container == "webm" else "aac")
    assert abs(info["duration_s"] - 3) < 0.15


def test_transcode_fps_audio_none_and_destination(
    run_job: Run, clips: dict[str, Path], volume: Path, messages: list[str]
) -> None:
    result = run_job(
        action="transcode",
        video="volume://clips/clip.mp4",
        height=120,
        fps=10,
        preset="ultrafast",
        audio_codec="none",
        destination="volume://out/small.mp4",
    )
    assert result["destination"] == "volume://out/small.mp4" and "base64" not in result
    info = probe(volume / "out" / "small.mp4")
    assert [s["type"] for s in info["streams"]] == ["video"]
    video = stream(info, "video")
    assert (video["width"], video["height"], video["fps"]) == (160, 120, 10.0)
    assert result["audio_encoder"] is None
    assert messages[-1] == "transcode 100%" and any(m.startswith("transcode ") for m in messages)


def test_transcode_copies_audio_when_asked(run_job: Run, clips: dict[str, Path]) -> None:
    result = run_job(
        action="transcode",
        video="volume://clips/clip.webm",
        container="mkv",
        preset="ultrafast",
        audio_codec="copy",
    )
    assert result["audio_encoder"] == "copy" and result["streams"] == ["h264", "opus"]


# --- extract_audio ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "codec", "rate", "channels", "count"),
    [
        ("wav", "pcm_s16le", 16000, "mono", 1),
        ("mp3", "mp3", 44100, "stereo", 2),
        ("aac", "aac", 22050, "mono", 1),
        ("opus", "opus", 48000, "stereo", 2),
    ],
)
def test_extract_audio(
    run_job: Run,
    clips: dict[str, Path],
    tmp_path: Path,
    fmt: str,
    codec: str,
    rate: int,
    channels: str,
    count: int,
) -> None:
    result = run_job(
        action="extract_audio",
        video="volume://clips/clip.mp4",
        format=fmt,
        sample_rate=rate,
        channels=channels,
    )
    assert "error" not in result, result
    assert (result["sample_rate"], result["channels"]) == (rate, count)
    out = tmp_path / f"audio.{fmt}"
    out.write_bytes(output_bytes(result))
    info = probe(out)
    assert [s["type"] for s in info["streams"]] == ["audio"]
    audio = stream(info, "audio")
    assert (audio["codec"], audio["sample_rate"], audio["channels"]) == (codec, rate, count)
    assert abs(info["duration_s"] - 3) < 0.15


# --- pictures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp"])
def test_thumbnail_at_a_time_is_an_image_of_the_asked_width(
    run_job: Run, clips: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    result = run_job(
        action="thumbnail", video="volume://clips/clip.mp4", time_s=1.5, format=fmt, width=160
    )
    assert result["time_s"] == 1.5 and result["format"] == fmt
    assert result["encoder"] == {"jpg": "mjpeg", "png": "png", "webp": "libwebp"}[fmt]
    assert image_size(output_bytes(result), tmp_path, f"thumb.{fmt}") == (160, 120)


def test_thumbnails_evenly_spaced_to_a_volume_folder(
    run_job: Run, clips: dict[str, Path], volume: Path, tmp_path: Path
) -> None:
    result = run_job(
        action="thumbnail",
        video="volume://clips/clip.mp4",
        count=3,
        destination="volume://thumbs/",
    )
    assert [t["time_s"] for t in result["thumbnails"]] == [0.5, 1.5, 2.5]
    names = sorted(p.name for p in (volume / "thumbs").iterdir())
    assert names == ["thumbnail-001.jpg", "thumbnail-002.jpg", "thumbnail-003.jpg"]
    data = (volume / "thumbs" / names[0]).read_bytes()
    assert image_size(data, tmp_path, "t.jpg") == (320, 240)


@pytest.mark.parametrize(("interval", "count"), [(1.0, 3), (0.5, 6)])
def test_frames_come_back_as_a_zip(
    run_job: Run, clips: dict[str, Path], tmp_path: Path, interval: float, count: int
) -> None:
    result = run_job(
        action="frames", video="volume://clips/clip.mp4", interval_s=interval, width=80
    )
    assert result["count"] == count
    with zipfile.ZipFile(io.BytesIO(output_bytes(result))) as archive:
        names = archive.namelist()
        assert names == [f"frame-{i:05d}.jpg" for i in range(1, count + 1)]
        first = archive.read(names[0])
    assert image_size(first, tmp_path, "frame.jpg") == (80, 60)


# --- trim ------------------------------------------------------------------------------------


def test_trim_stream_copy_keeps_the_codecs(
    run_job: Run, clips: dict[str, Path], tmp_path: Path
) -> None:
    result = run_job(action="trim", video="volume://clips/clip.mp4", start_s=1, end_s=2)
    assert (result["encoder"], result["container"]) == ("copy", "mp4")
    out = tmp_path / "cut.mp4"
    out.write_bytes(output_bytes(result))
    info = probe(out)
    assert [s["codec"] for s in info["streams"]] == ["h264", "aac"]
    assert abs(info["duration_s"] - 1) < 0.2  # a keyframe every second: the cut is close


def test_trim_reencodes_when_asked(run_job: Run, clips: dict[str, Path], tmp_path: Path) -> None:
    result = run_job(
        action="trim",
        video="volume://clips/clip.webm",
        start_s=0.5,
        end_s=1.5,
        reencode=True,
        preset="ultrafast",
    )
    assert (result["encoder"], result["container"]) == ("libvpx-vp9", "webm")
    out = tmp_path / "cut.webm"
    out.write_bytes(output_bytes(result))
    info = probe(out)
    assert [s["codec"] for s in info["streams"]] == ["vp9", "opus"]
    assert abs(info["duration_s"] - 1) < 0.1


# --- NVENC ------------------------------------------------------------------------------------


def test_nvenc_is_used_only_when_its_test_encode_passed(
    run_job: Run, handler: Any, clips: dict[str, Path]
) -> None:
    job = {"action": "trim", "video": "volume://clips/clip.mp4", "start_s": 0, "end_s": 1}
    result = run_job(**job, reencode=True, encoder="nvenc")
    if handler.encoders.nvenc:  # a GPU with NVENC: the job runs on it
        assert result["encoder"] == "h264_nvenc", result
    else:
        assert result["error"].startswith(
            "input.encoder='nvenc' is not available on this worker: the h264_nvenc test "
            "encode failed (h264_nvenc: "
        )
        assert result["error"].endswith("; use encoder auto or cpu")
        if not Path("/dev/nvidiactl").exists():
            assert "Cannot load libcuda.so.1" in handler.encoders.nvenc_problem
        assert run_job(**job, reencode=True, preset="ultrafast")["encoder"] == "libx264"
    assert run_job(**job, reencode=True, video_codec="vp9", encoder="nvenc") == {
        "error": "input.encoder='nvenc' cannot encode vp9: NVENC encodes h264, hevc, av1; "
        "use encoder auto or cpu"
    }


# --- bad input --------------------------------------------------------------------------------


def test_bad_media_is_refused_and_the_next_job_runs(
    run_job: Run, clips: dict[str, Path], volume: Path
) -> None:
    not_media = base64.b64encode(os.urandom(4096)).decode()
    readable = "; give a video in one of these containers: mp4/mov, mkv/webm, avi, flv, "
    readable += "mpegts, mpeg, ogg, asf"
    assert run_job(action="probe", video_base64=not_media) == {
        "error": "input.video_base64 is not a media file FFmpeg can read (Invalid data found "
        "when processing input)" + readable
    }
    # Its index is at the end (no faststart): the first half of the file has none.
    data = clips["mp4"].read_bytes()
    (volume / "half.mp4").write_bytes(data[: len(data) // 2])
    result = run_job(action="transcode", video="volume://half.mp4")
    assert result == {
        "error": "input.video is not a media file FFmpeg can read (Invalid data found when "
        "processing input)" + readable
    }
    playlist = "#EXTM3U\n#EXTINF:1,\nfile:/etc/passwd\n"
    (volume / "list.m3u8").write_text(playlist)
    assert run_job(action="probe", video="volume://list.m3u8")["error"].startswith(
        "input.video is not a media file FFmpeg can read"
    )
    assert run_job(action="probe", video="volume://clips/clip.mp4")["duration_s"] > 2.9


@pytest.mark.parametrize(
    ("job", "error"),
    [
        (
            {"action": "transcode", "video_codec": "mpeg2"},
            "input.video_codec='mpeg2' is not allowed: choose one of h264, hevc, av1, vp9",
        ),
        (
            {"action": "transcode", "preset": "; rm -rf /"},
            f"input.preset='; rm -rf /' is not allowed: choose one of {PRESETS}",
        ),
        (
            {"action": "transcode", "video_codec": "-i /etc/passwd"},
            "input.video_codec='-i /etc/passwd' is not allowed: choose one of h264, hevc, av1, vp9",
        ),
        (
            {"action": "transcode", "container": "mp4 -f null"},
            "input.container='mp4 -f null' is not allowed: choose one of mp4, webm, mkv",
        ),
        (
            {"action": "thumbnail", "format": "; rm -rf /"},
            "input.format='; rm -rf /' is not allowed: choose one of jpg, png, webp",
        ),
        (
            {"action": "transcode", "crf": "23 -i /etc/passwd"},
            "input.crf must be an integer, got string '23 -i /etc/passwd'",
        ),
        (
            {"action": "transcode", "filter": "scale=1:1"},
            "input.filter is not a known field; known fields: audio_bitrate_kbps, audio_codec, "
            "bitrate_kbps, container, credentials, crf, destination, encoder, fps, height, "
            "preset, video, video_base64, video_codec, width",
        ),
        (
            {"action": "trim", "start_s": -1, "end_s": 2},
            "input.start_s=-1.0 is too small: the minimum is 0",
        ),
        (
            {"action": "trim", "start_s": 2, "end_s": 1},
            "input.end_s=1 must be after input.start_s=2",
        ),
        (
            {"action": "thumbnail", "time_s": -0.5},
            "input.time_s=-0.5 is too small: the minimum is 0",
        ),
        (
            {"action": "thumbnail", "time_s": 9},
            "input.time_s=9 is past the end of the video (3 s)",
        ),
        (
            {"action": "trim", "start_s": 0, "end_s": 30},
            "input.end_s=30 is past the end of the video (3 s)",
        ),
        (
            {"action": "transcode", "container": "webm", "video_codec": "h264"},
            "input.video_codec='h264' does not go in webm: choose one of vp9, av1, or another "
            "container",
        ),
        (
            {"action": "transcode", "width": 161},
            "input.width=161: must be even (4:2:0 video has even sizes)",
        ),
        (
            {"action": "trim", "end_s": 1, "video_codec": "av1"},
            "input.video_codec needs input.reencode=true: a stream copy keeps the codecs",
        ),
        (
            {"action": "extract_audio", "format": "opus", "sample_rate": 44100},
            "input.sample_rate=44100 is not allowed with opus: choose one of 8000, 12000, "
            "16000, 24000, 48000",
        ),
        (
            {"action": "convert"},
            "input.action='convert' is not allowed: choose one of probe, transcode, "
            "extract_audio, thumbnail, frames, trim",
        ),
    ],
)
def test_bad_options_are_refused_naming_field_value_and_choices(
    run_job: Run, clips: dict[str, Path], job: dict[str, Any], error: str
) -> None:
    assert run_job(video="volume://clips/clip.mp4", **job) == {"error": error}
    assert run_job(action="probe", video="volume://clips/clip.mp4")["action"] == "probe"


def test_a_destination_nothing_can_go_to_is_refused_before_the_source_is_fetched(
    run_job: Run, messages: list[str]
) -> None:
    source = closed_port_url() + "/clip.mp4"  # fetching it would fail with another error
    result = run_job(action="transcode", video=source, destination="ftp://example.com/out.mp4")
    assert result == {
        "error": "input.destination='ftp://example.com/out.mp4' has scheme 'ftp'; allowed: "
        "s3://, volume://, https://, http://"
    }
    assert not any("fetching" in message for message in messages)


def test_duration_limit(video_environ: dict[str, str], clips: dict[str, Path]) -> None:
    # The video settings are the handler's own: the worker reads them from its environment.
    handler = build_handler({**video_environ, "RUNPOD_SLIM_VIDEO_MAX_DURATION_S": "2"})
    job = adapt(handler, lambda job, message: None)
    result = asyncio.run(
        job({"id": "x", "input": {"action": "probe", "video": "volume://clips/clip.mp4"}})
    )
    assert result == {
        "error": "input.video is 3 s long; the limit is 2 s (RUNPOD_SLIM_VIDEO_MAX_DURATION_S)"
    }


def test_thumbnails_of_the_handlers_own_example_clip(run_job: Run) -> None:
    from handlers.video import EXAMPLE_CLIP

    result = run_job(action="thumbnail", video_base64=EXAMPLE_CLIP, count=3)
    assert "error" not in result, result
    assert [t["time_s"] for t in result["thumbnails"]] == [0.167, 0.5, 0.75]


def ffmpeg_children() -> list[int]:
    """Processes whose parent is this one and whose program is ffmpeg."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and "ffmpeg" in (entry / "cmdline").read_text():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_an_encode_past_the_time_limit_is_stopped_and_ffmpeg_killed(
    video_environ: dict[str, str], ffmpeg: str, volume: Path
) -> None:
    make_clip(ffmpeg, volume / "long.mp4", 30, "-c:v", "libx264", "-preset", "ultrafast")
    handler = build_handler({**video_environ, "RUNPOD_SLIM_JOB_TIMEOUT_S": "3"})
    job = adapt(handler, lambda job, message: None)
    began = time.monotonic()
    result = asyncio.run(
        job(
            {
                "id": "slow",
                "input": {
                    "action": "transcode",
                    "video": "volume://long.mp4",
                    "video_codec": "hevc",
                    "preset": "veryslow",
                },
            }
        )
    )
    took = time.monotonic() - began
    assert result == {
        "error": "the job ran past its time limit of 3 s (RUNPOD_SLIM_JOB_TIMEOUT_S) and was "
        "stopped"
    }
    assert took < 15, took
    assert ffmpeg_children() == []


def test_output_pixel_and_size_limits(run_job: Run, video_environ: dict[str, str]) -> None:
    from handlers.video import EXAMPLE_CLIP

    eight_k = run_job(
        action="transcode", video_base64=EXAMPLE_CLIP, width=7680, height=4320, preset="ultrafast"
    )
    assert eight_k == {
        "error": "the output would be 33,177,600 pixels a frame; the limit is 8,294,400 "
        "(RUNPOD_SLIM_VIDEO_MAX_PIXELS): ask for a smaller input.width or input.height"
    }
    handler = build_handler({**video_environ, "RUNPOD_SLIM_VIDEO_MAX_OUTPUT_MB": "0.001"})
    job = adapt(handler, lambda job, message: None)
    big = asyncio.run(
        job({"id": "b", "input": {"action": "extract_audio", "video_base64": EXAMPLE_CLIP}})
    )
    assert big["error"].startswith("the output reached 0 MB, the limit"), big


# --- the worker, as users run it ------------------------------------------------------------


def test_test_input_runs_a_probe_job(video_environ: dict[str, str], clips: dict[str, Path]) -> None:
    job = {"input": {"action": "probe", "video": "volume://clips/clip.webm"}}
    code, log = run_one_job(video_environ, job["input"])
    assert code == 0, log[-4000:]
    assert "Job local_test completed successfully." in log
    assert "'container': 'matroska,webm'" in log and "'codec': 'vp9'" in log
    assert "video: ffmpeg " in log and "NVENC " in log  # setup says which encoders run


def test_local_api_serves_a_job_and_survives_a_bad_one(
    video_environ: dict[str, str], clips: dict[str, Path]
) -> None:
    with local_api(video_environ) as api:
        bad = api.runsync(
            {"action": "transcode", "video": "volume://clips/clip.mp4", "preset": "-1"}
        )
        assert bad["status"] == "FAILED"
        assert bad["error"] == f"input.preset='-1' is not allowed: choose one of {PRESETS}"
        good = api.runsync(
            {
                "action": "thumbnail",
                "video": "volume://clips/clip.mp4",
                "format": "png",
                "width": 64,
            }
        )
        assert good["status"] == "COMPLETED", good
        assert good["output"]["encoder"] == "png"


def test_run_examples_script_passes(video_environ: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/run_examples.py", "video"],
        cwd=REPO,
        env=video_environ,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stdout.strip().endswith("6 passed, 0 failed")
