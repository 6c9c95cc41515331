"""The video handler's options, checked and turned into ffmpeg arguments (no ffmpeg runs).

Planning is pure: a probed input (MediaInfo) and checked options in, an argument list out.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from handlers.errors import JobError
from handlers.video import VideoHandler
from handlers.video.media import DEMUXERS, MediaInfo, StreamInfo, input_args
from handlers.video.options import (
    AUDIO_CODECS,
    CONTAINERS,
    FIELDS,
    PRESETS,
    VIDEO_CODECS,
    VideoJob,
    parse,
)
from handlers.video.plan import choose_encoder, plan_copy, plan_encode, video_args

H264_AAC = MediaInfo(
    container="mov,mp4,m4a,3gp,3g2,mj2",
    duration_s=3.0,
    size_bytes=1000,
    bitrate=None,
    streams=(
        StreamInfo(0, "video", "h264", width=320, height=240, fps=25.0),
        StreamInfo(1, "audio", "aac", sample_rate=44100, channels=2),
    ),
)
VP9_OPUS = MediaInfo(
    container="matroska,webm",
    duration_s=2.0,
    size_bytes=1000,
    bitrate=None,
    streams=(
        StreamInfo(0, "video", "vp9", width=320, height=240, fps=25.0),
        StreamInfo(1, "audio", "opus", sample_rate=48000, channels=2),
    ),
)
AUDIO_ONLY = MediaInfo("mp3", 3.0, 1000, None, (StreamInfo(0, "audio", "mp3"),))


def options(action: str = "transcode", **given: Any) -> Any:
    """The typed job `parse` makes of these options (Any: each test knows its action's type)."""
    job: VideoJob = parse({"action": action, "video": "volume://clip.mp4", **given})
    return job


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(JobError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


def test_encoder_choice() -> None:
    none: frozenset[str] = frozenset()
    assert choose_encoder("h264", "auto", none) == "libx264"
    assert choose_encoder("h264", "auto", frozenset({"h264"})) == "h264_nvenc"
    assert choose_encoder("hevc", "auto", frozenset({"h264"})) == "libx265"
    assert choose_encoder("av1", "cpu", frozenset({"av1"})) == "libsvtav1"
    assert choose_encoder("vp9", "auto", frozenset({"h264", "hevc", "av1"})) == "libvpx-vp9"
    assert choose_encoder("av1", "nvenc", frozenset({"av1"})) == "av1_nvenc"
    assert refusal(choose_encoder, "h264", "nvenc", none, "h264_nvenc: Cannot load x") == (
        "input.encoder='nvenc' is not available on this worker: the h264_nvenc test encode "
        "failed (h264_nvenc: Cannot load x); use encoder auto or cpu"
    )
    assert refusal(choose_encoder, "vp9", "nvenc", frozenset({"h264"})) == (
        "input.encoder='nvenc' cannot encode vp9: NVENC encodes h264, hevc, av1; "
        "use encoder auto or cpu"
    )


def test_video_args_per_encoder() -> None:
    assert video_args("libx264", "h264", "veryfast", None, None) == [
        *("-c:v", "libx264", "-preset", "veryfast", "-crf", "23"),
    ]
    assert video_args("libx265", "hevc", "slow", 20, None) == [
        *("-c:v", "libx265", "-preset", "slow", "-x265-params", "log-level=error", "-crf", "20"),
    ]
    assert video_args("libsvtav1", "av1", "ultrafast", None, 800) == [
        *("-c:v", "libsvtav1", "-preset", "12", "-b:v", "800k"),
    ]
    assert video_args("libvpx-vp9", "vp9", "medium", None, None) == [
        *("-c:v", "libvpx-vp9", "-deadline", "good", "-cpu-used", "2", "-row-mt", "1"),
        *("-crf", "33", "-b:v", "0"),
    ]
    assert video_args("hevc_nvenc", "hevc", "veryslow", 25, None) == [
        *("-c:v", "hevc_nvenc", "-preset", "p7", "-rc", "vbr", "-cq", "25", "-b:v", "0"),
    ]
    assert refusal(video_args, "libx264", "h264", "fast", 60, None) == (
        "input.crf=60 is too large for h264: the maximum is 51"
    )


def test_a_default_transcode_is_h264_aac_mp4_with_faststart() -> None:
    plan = plan_encode(options(), H264_AAC, frozenset(), {})
    assert (plan.encoder, plan.audio_encoder, plan.container) == ("libx264", "aac", "mp4")
    assert plan.args == (
        *("-map", "0:v:0", "-sn", "-dn"),
        *("-c:v", "libx264", "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p"),
        *("-map", "0:1", "-c:a", "aac", "-b:a", "128k"),
        *("-f", "mp4", "-movflags", "+faststart"),
    )


def test_scale_keeps_the_aspect_and_fps_is_a_filter() -> None:
    plan = plan_encode(options(width=160, fps=12.5), H264_AAC, frozenset(), {})
    assert plan.args[plan.args.index("-vf") + 1] == "scale=160:-2,fps=fps=12.5"
    plan = plan_encode(options(height=120), H264_AAC, frozenset(), {})
    assert plan.args[plan.args.index("-vf") + 1] == "scale=-2:120"


def test_webm_defaults_to_vp9_and_opus_and_hevc_in_mp4_is_tagged() -> None:
    plan = plan_encode(options(container="webm"), H264_AAC, frozenset(), {})
    assert (plan.encoder, plan.audio_encoder) == ("libvpx-vp9", "libopus")
    assert plan.args[plan.args.index("-ar") + 1] == "48000"  # opus has no 44.1 kHz
    plan = plan_encode(options(video_codec="hevc"), H264_AAC, frozenset(), {})
    assert plan.args[plan.args.index("-tag:v") + 1] == "hvc1"


def test_inconsistent_transcodes_are_refused() -> None:
    assert refusal(plan_encode, options(crf=20, bitrate_kbps=900), H264_AAC, frozenset(), {}) == (
        "give input.crf or input.bitrate_kbps, not both"
    )
    assert refusal(
        plan_encode, options(container="webm", audio_codec="aac"), H264_AAC, frozenset(), {}
    ) == ("input.audio_codec='aac' does not go in webm: choose one of opus, copy, none")
    assert refusal(
        plan_encode, options(container="webm", audio_codec="copy"), H264_AAC, frozenset(), {}
    ) == ("input.audio_codec='copy': the source's aac audio cannot go in webm; choose one of opus")
    assert refusal(plan_encode, options(), AUDIO_ONLY, frozenset(), {}) == (
        "input.video has no video stream to encode"
    )


def test_stream_copy_trims() -> None:
    plan = plan_copy(options("trim", end_s=1), H264_AAC)
    assert (plan.encoder, plan.container) == ("copy", "mp4")
    assert plan.args == (
        *("-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy"),
        *("-avoid_negative_ts", "make_zero", "-f", "mp4"),
    )
    assert plan_copy(options("trim", end_s=1), VP9_OPUS).container == "webm"
    assert plan_copy(options("trim", end_s=1, container="mkv"), VP9_OPUS).container == "mkv"
    assert refusal(plan_copy, options("trim", end_s=1, container="webm"), H264_AAC) == (
        "the video codec h264 cannot be copied into webm; choose another container or set "
        "input.reencode=true"
    )
    assert refusal(plan_copy, options("trim", end_s=1, crf=20), H264_AAC) == (
        "input.crf needs input.reencode=true: a stream copy keeps the codecs"
    )


@pytest.mark.parametrize("value", ["-i /etc/passwd", "; rm -rf /", "h264 -vf x", "$(id)", ""])
@pytest.mark.parametrize(
    ("action", "name"),
    [
        ("transcode", "container"),
        ("transcode", "video_codec"),
        ("transcode", "preset"),
        ("transcode", "audio_codec"),
        ("transcode", "encoder"),
        ("extract_audio", "format"),
        ("extract_audio", "channels"),
        ("thumbnail", "format"),
        ("frames", "format"),
    ],
)
def test_every_text_option_is_one_of_its_choices(action: str, name: str, value: str) -> None:
    choices = ", ".join(str(c) for c in FIELDS[action][name].choices)
    assert refusal(options, action, **{name: value}) == (
        f"input.{name}={value!r} is not allowed: choose one of {choices}"
    )


def test_arguments_hold_only_values_the_handler_wrote() -> None:
    # Every combination of the text options: no argument has a space or a shell character.
    for container, codec, preset, audio in itertools.product(
        CONTAINERS, VIDEO_CODECS, PRESETS, AUDIO_CODECS
    ):
        try:
            plan = plan_encode(
                options(container=container, video_codec=codec, preset=preset, audio_codec=audio),
                H264_AAC,
                frozenset(),
                {},
            )
        except JobError:
            continue  # an inconsistent pair, refused
        assert all(" " not in a and ";" not in a and "$" not in a for a in plan.args), plan.args


def test_inputs_open_under_the_allow_lists() -> None:
    from pathlib import Path

    assert input_args(Path("/w/source"), 1.5) == [
        *("-ss", "1.500", "-protocol_whitelist", "file"),
        *("-format_whitelist", ",".join(DEMUXERS), "-i", "file:/w/source"),
    ]


def test_examples_are_valid_jobs() -> None:
    assert len(VideoHandler.examples) == 6
    for example in VideoHandler.examples:
        assert parse(example).action == example["action"]
