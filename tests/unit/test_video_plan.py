"""The video handler's pure planner and limits, on typed options (no ffmpeg runs).

A job is parsed into its typed value (handlers.video.options.parse) exactly as the handler
does; a MediaInfo stands for what PyAV would have probed.
"""

from __future__ import annotations

from typing import Any

import pytest

from handlers.errors import JobError
from handlers.video.checks import check_input, check_pixels, output_pixels
from handlers.video.media import MediaInfo, StreamInfo
from handlers.video.options import (
    EncodeOptions,
    ExtractAudio,
    Frames,
    Probe,
    Source,
    Thumbnail,
    Transcode,
    Trim,
    parse,
)
from handlers.video.plan import (
    MAX_PICTURES,
    frames_args,
    picture_args,
    plan_audio,
    plan_encode,
    plan_trim,
    thumbnail_times,
)

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
VIDEO_ONLY = MediaInfo(
    "matroska,webm", 1.0, 1000, None, (StreamInfo(0, "video", "vp9", width=64, height=64, fps=4),)
)
AUDIO_ONLY = MediaInfo("mp3", 3.0, 1000, None, (StreamInfo(0, "audio", "mp3"),))
CLIP = "volume://clip.mp4"


def job(action: str, **given: Any) -> Any:
    """The typed job for these options (Any: each test knows which action it made)."""
    return parse({"action": action, "video": CLIP, **given})


def refusal(call: Any, *args: Any) -> str:
    with pytest.raises(JobError) as caught:
        call(*args)
    return str(caught.value)


# --- parse: each action's input becomes its typed value ---------------------------------------


def test_each_action_parses_into_its_typed_value_with_defaults() -> None:
    source = Source(url=CLIP)
    assert job("probe") == Probe(source)
    assert job("transcode", crf=20, width=160) == Transcode(
        source, container="mp4", encode=EncodeOptions(crf=20, width=160)
    )
    assert job("extract_audio", format="mp3", channels="mono") == ExtractAudio(
        source, format="mp3", channels="mono"
    )
    assert job("thumbnail", count=3) == Thumbnail(source, count=3)
    assert job("frames", interval_s=2) == Frames(source, interval_s=2.0)
    trim = job("trim", start_s=1, end_s=2, reencode=True, preset="fast")
    assert trim == Trim(
        source, end_s=2.0, start_s=1.0, reencode=True, encode=EncodeOptions(preset="fast")
    )
    assert isinstance(trim.start_s, float) and trim.container is None
    assert parse({"action": "probe", "video_base64": "AAAA"}).source.field == ("input.video_base64")


def test_parse_refuses_an_unknown_action_and_a_trim_that_ends_first() -> None:
    assert refusal(parse, {"action": "convert"}) == (
        "input.action='convert' is not allowed: choose one of probe, transcode, extract_audio, "
        "thumbnail, frames, trim"
    )
    assert refusal(parse, {"video": CLIP}) == ("input.action is required")
    assert refusal(parse, {"action": "trim", "video": CLIP, "start_s": 2, "end_s": 2}) == (
        "input.end_s=2 must be after input.start_s=2"
    )


def test_only_encode_options_the_job_set_count_as_asked() -> None:
    assert EncodeOptions().asked() == ()
    assert EncodeOptions(preset="slow", encoder="cpu").asked() == ()
    assert EncodeOptions(fps=10.0, video_codec="av1", crf=30).asked() == (
        "video_codec",
        "crf",
        "fps",
    )


# --- trim -------------------------------------------------------------------------------------


def test_a_trim_plan_leads_with_its_length_copy_or_reencode() -> None:
    copy = plan_trim(job("trim", start_s=0.5, end_s=2), H264_AAC, frozenset(), {})
    assert copy.args[:2] == ("-t", "1.500") and copy.encoder == "copy"
    assert copy.args[2:6] == ("-map", "0:v:0?", "-map", "0:a:0?")
    again = plan_trim(
        job("trim", end_s=1, reencode=True, container="webm", preset="ultrafast"),
        H264_AAC,
        frozenset(),
        {},
    )
    assert again.args[:2] == ("-t", "1.000")
    assert (again.encoder, again.audio_encoder, again.container) == (
        "libvpx-vp9",
        "libopus",
        "webm",
    )
    assert (
        again.args[2:]
        == plan_encode(
            job("trim", end_s=1, reencode=True, container="webm", preset="ultrafast"),
            H264_AAC,
            frozenset(),
            {},
        ).args
    )


def test_a_reencoding_trim_keeps_the_inputs_container_unless_asked() -> None:
    plan = plan_trim(job("trim", end_s=1, reencode=True), H264_AAC, frozenset({"h264"}), {})
    assert (plan.encoder, plan.container) == ("h264_nvenc", "mp4")
    plan = plan_trim(
        job("trim", end_s=1, reencode=True, encoder="cpu"), VIDEO_ONLY, frozenset(), {}
    )
    assert (plan.encoder, plan.audio_encoder, plan.container) == ("libvpx-vp9", None, "webm")
    assert "-an" in plan.args


# --- extract_audio ----------------------------------------------------------------------------


def test_audio_plans_per_format() -> None:
    plan = plan_audio(job("extract_audio", format="opus", sample_rate=16000), H264_AAC)
    assert (plan.encoder, plan.muxer, plan.extension) == ("libopus", "ogg", "opus")
    assert plan.args == ("-map", "0:1", "-vn", "-sn", "-dn", "-c:a", "libopus", "-ar", "16000")
    plan = plan_audio(
        job("extract_audio", format="mp3", audio_bitrate_kbps=64, channels="mono"), H264_AAC
    )
    assert plan.args[-6:] == ("-c:a", "libmp3lame", "-b:a", "64k", "-ac", "1")
    assert plan_audio(job("extract_audio"), H264_AAC).muxer == "wav"
    assert plan_audio(job("extract_audio", format="aac"), H264_AAC).muxer == "adts"


def test_audio_plans_refuse_what_cannot_be() -> None:
    assert refusal(plan_audio, job("extract_audio"), VIDEO_ONLY) == (
        "input.video has no audio stream to extract"
    )
    assert refusal(
        plan_audio, job("extract_audio", format="opus", sample_rate=22050), H264_AAC
    ) == (
        "input.sample_rate=22050 is not allowed with opus: choose one of 8000, 12000, 16000, "
        "24000, 48000"
    )
    assert refusal(plan_audio, job("extract_audio", audio_bitrate_kbps=96), H264_AAC) == (
        "input.audio_bitrate_kbps does not apply to wav (it is uncompressed)"
    )


# --- pictures ---------------------------------------------------------------------------------


def test_thumbnail_times_are_evenly_spaced_and_clamped_to_the_last_frame() -> None:
    assert thumbnail_times(job("thumbnail"), H264_AAC) == [1.5]
    assert thumbnail_times(job("thumbnail", count=3), H264_AAC) == [0.5, 1.5, 2.5]
    assert thumbnail_times(job("thumbnail", time_s=2.99), H264_AAC) == [2.96]  # 25 fps
    # 4 fps, 1 s: no frame starts after 0.75 s.
    assert thumbnail_times(job("thumbnail", count=3), VIDEO_ONLY) == [0.167, 0.5, 0.75]


def test_thumbnail_times_refuse_both_ways_a_time_past_the_end_and_no_video() -> None:
    assert refusal(thumbnail_times, job("thumbnail", time_s=1, count=2), H264_AAC) == (
        "give input.time_s or input.count, not both"
    )
    assert refusal(thumbnail_times, job("thumbnail", time_s=3), H264_AAC) == (
        "input.time_s=3 is past the end of the video (3 s)"
    )
    assert refusal(thumbnail_times, job("thumbnail"), AUDIO_ONLY) == (
        "input.video has no video stream"
    )


def test_picture_arguments() -> None:
    assert picture_args(job("thumbnail", format="webp", width=100)) == (
        *("-map", "0:v:0", "-vf", "scale=100:-1"),
        *("-c:v", "libwebp", "-quality", "80"),
    )
    assert picture_args(job("thumbnail", format="png")) == ("-map", "0:v:0", "-c:v", "png")
    assert frames_args(job("frames", interval_s=0.5, width=80), H264_AAC) == (
        *("-map", "0:v:0", "-vf", "fps=fps=2.000000,scale=80:-1"),
        *("-c:v", "mjpeg", "-q:v", "2"),
    )


def test_frames_are_refused_past_the_picture_limit() -> None:
    long = MediaInfo("mp4", 3600.0, 1, None, H264_AAC.streams)
    assert len(frames_args(job("frames", interval_s=3.6), long)) == 8  # exactly the limit
    assert refusal(frames_args, job("frames", interval_s=1), long) == (
        f"input.interval_s=1 makes 3600 frames of a 3600 s video; the limit is {MAX_PICTURES}: "
        "choose a longer interval"
    )


# --- limits -----------------------------------------------------------------------------------


def test_output_pixels_follow_the_scale_each_action_makes() -> None:
    assert output_pixels(job("transcode"), H264_AAC) == 320 * 240
    assert output_pixels(job("transcode", width=640), H264_AAC) == 640 * 480
    assert output_pixels(job("transcode", height=480), H264_AAC) == 640 * 480
    assert output_pixels(job("transcode", width=100, height=100), H264_AAC) == 10_000
    assert output_pixels(job("thumbnail", width=32), H264_AAC) == 32 * 24
    assert output_pixels(job("frames"), H264_AAC) == 320 * 240
    assert output_pixels(job("trim", end_s=1, reencode=True, width=160), H264_AAC) == 160 * 120
    # Nothing is decoded into pictures: no frame to count.
    assert output_pixels(job("trim", end_s=1), H264_AAC) is None
    assert output_pixels(job("extract_audio"), H264_AAC) is None
    assert output_pixels(job("transcode"), AUDIO_ONLY) is None


def test_limits_name_their_setting() -> None:
    assert refusal(check_pixels, job("transcode", width=640), H264_AAC, 640 * 480 - 1) == (
        "the output would be 307,200 pixels a frame; the limit is 307,199 "
        "(RUNPOD_SLIM_VIDEO_MAX_PIXELS): ask for a smaller input.width or input.height"
    )
    check_pixels(job("transcode", width=640), H264_AAC, 640 * 480)
    assert refusal(check_input, job("probe"), H264_AAC, 2) == (
        "input.video is 3 s long; the limit is 2 s (RUNPOD_SLIM_VIDEO_MAX_DURATION_S)"
    )
    check_input(job("probe"), H264_AAC, 3)
    assert refusal(check_input, job("trim", start_s=3, end_s=4), H264_AAC, 10) == (
        "input.start_s=3 is past the end of the video (3 s)"
    )
    assert refusal(check_input, job("trim", end_s=3.6), H264_AAC, 10) == (
        "input.end_s=3.6 is past the end of the video (3 s)"
    )
    check_input(job("trim", end_s=3.5), H264_AAC, 10)  # container durations are approximate
    untimed = MediaInfo("mp4", None, 1, None, H264_AAC.streams)
    assert refusal(check_input, job("probe"), untimed, 10) == (
        "input.video has no duration FFmpeg can read; it may be truncated"
    )
    silent = MediaInfo("mp4", 1.0, 1, None, (StreamInfo(0, "data", "bin_data"),))
    assert refusal(check_input, job("probe"), silent, 10) == (
        "input.video has no video or audio stream"
    )


def test_the_start_log_says_which_encoders_jobs_get() -> None:
    from handlers.video.ffmpeg import Encoders

    none = Encoders("ffmpeg", frozenset(), {"h264": "h264_nvenc: Cannot load libcuda.so.1"})
    assert none.describe() == (
        "NVENC unavailable (h264_nvenc: Cannot load libcuda.so.1); "
        "encoders: libx264, libx265, libsvtav1, libvpx-vp9"
    )
    assert none.nvenc_problem == "h264_nvenc: Cannot load libcuda.so.1"
    some = Encoders("ffmpeg", frozenset({"h264", "av1"}), {"hevc": "hevc_nvenc: no"})
    assert some.describe() == (
        "NVENC works (h264_nvenc, av1_nvenc); encoders: h264_nvenc, av1_nvenc, libx265, libvpx-vp9"
    )
