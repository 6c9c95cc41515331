"""Pure planning: ffmpeg's output arguments from a job's typed options and the probed input.

Nothing here runs a process or touches a file: a job (handlers.video.options) and a
MediaInfo in, a frozen plan (an argument tuple and what it will run) out, or a JobError that
says which option does not fit and what would. Every argument is written here, from checked
values only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import JobError
from .media import MediaInfo, seconds
from .options import (
    OPUS_RATES,
    PRESETS,
    VIDEO_CODECS,
    EncodeOptions,
    ExtractAudio,
    Frames,
    Thumbnail,
    Transcode,
    Trim,
)

MAX_PICTURES = 1000  # frames one job may return
CPU_ENCODERS = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1", "vp9": "libvpx-vp9"}
NVENC_ENCODERS = {"h264": "h264_nvenc", "hevc": "hevc_nvenc", "av1": "av1_nvenc"}
MAX_CRF = {"h264": 51, "hevc": 51, "av1": 63, "vp9": 63}
DEFAULT_CRF = {"h264": 23, "hevc": 28, "av1": 35, "vp9": 33}
# One preset scale for every encoder: x264/x265 names, mapped to each encoder's own knob.
_SVT_PRESET = dict(zip(PRESETS, (12, 11, 10, 9, 8, 6, 4, 3, 2), strict=True))
_VPX_PRESET = dict(
    zip(
        PRESETS,
        (
            ("realtime", 8),
            ("realtime", 6),
            ("good", 5),
            ("good", 4),
            ("good", 3),
            ("good", 2),
            ("good", 1),
            ("good", 0),
            ("best", 0),
        ),
        strict=True,
    )
)
_NVENC_PRESET = dict(
    zip(PRESETS, ("p1", "p1", "p2", "p3", "p4", "p4", "p5", "p6", "p7"), strict=True)
)
_FORMAT = {"mp4": "mp4", "webm": "webm", "mkv": "matroska"}
_CONTAINER_VIDEO = {"mp4": VIDEO_CODECS, "webm": ("vp9", "av1"), "mkv": VIDEO_CODECS}
_CONTAINER_AUDIO = {"mp4": ("aac", "opus"), "webm": ("opus",), "mkv": ("aac", "opus")}
# What a stream copy may put in each container (None: anything).
_COPY_VIDEO: dict[str, tuple[str, ...] | None] = {
    "mp4": ("h264", "hevc", "av1", "vp9", "mpeg4"),
    "webm": ("vp8", "vp9", "av1"),
    "mkv": None,
}
_COPY_AUDIO: dict[str, tuple[str, ...] | None] = {
    "mp4": ("aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"),
    "webm": ("opus", "vorbis"),
    "mkv": None,
}
_AUDIO_OUT = {  # format -> (encoder, ffmpeg muxer, file extension)
    "wav": ("pcm_s16le", "wav", "wav"),
    "mp3": ("libmp3lame", "mp3", "mp3"),
    "aac": ("aac", "adts", "aac"),
    "opus": ("libopus", "ogg", "opus"),
}
_IMAGE_OUT = {  # format -> codec arguments
    "jpg": ("-c:v", "mjpeg", "-q:v", "2"),
    "png": ("-c:v", "png"),
    "webp": ("-c:v", "libwebp", "-quality", "80"),
}
IMAGE_ENCODER = {"jpg": "mjpeg", "png": "png", "webp": "libwebp"}


@dataclass(frozen=True)
class EncodePlan:
    """The output half of an ffmpeg command, and what it will run."""

    args: tuple[str, ...]
    encoder: str  # the video encoder ("copy" for a stream copy)
    audio_encoder: str | None
    container: str


@dataclass(frozen=True)
class AudioPlan:
    """The output half of an extract_audio command (the muxer and file name are separate)."""

    args: tuple[str, ...]
    encoder: str
    muxer: str
    extension: str


# --- encoders ---------------------------------------------------------------------------------


def choose_encoder(
    codec: str, mode: str, nvenc: frozenset[str], nvenc_problem: str = "not tested"
) -> str:
    """The encoder for `codec` under `mode` (auto, cpu, nvenc), given the codecs NVENC passed."""
    if mode == "nvenc":
        if codec not in NVENC_ENCODERS:
            raise JobError(
                f"input.encoder='nvenc' cannot encode {codec}: NVENC encodes "
                f"{', '.join(NVENC_ENCODERS)}; use encoder auto or cpu"
            )
        if codec not in nvenc:
            raise JobError(
                f"input.encoder='nvenc' is not available on this worker: the "
                f"{NVENC_ENCODERS[codec]} test encode failed ({nvenc_problem}); "
                f"use encoder auto or cpu"
            )
        return NVENC_ENCODERS[codec]
    if mode == "auto" and codec in nvenc:
        return NVENC_ENCODERS[codec]
    return CPU_ENCODERS[codec]


def video_args(
    encoder: str, codec: str, preset: str, crf: int | None, bitrate_kbps: int | None
) -> list[str]:
    """-c:v and its rate control and speed options, for one encoder."""
    if crf is not None and crf > MAX_CRF[codec]:
        raise JobError(f"input.crf={crf} is too large for {codec}: the maximum is {MAX_CRF[codec]}")
    quality = DEFAULT_CRF[codec] if crf is None and bitrate_kbps is None else crf
    rate = ["-b:v", f"{bitrate_kbps}k"] if bitrate_kbps is not None else []
    args = ["-c:v", encoder]
    if encoder.endswith("_nvenc"):
        args += ["-preset", _NVENC_PRESET[preset]]
        return args + (rate or ["-rc", "vbr", "-cq", str(quality), "-b:v", "0"])
    if encoder == "libvpx-vp9":
        deadline, cpu_used = _VPX_PRESET[preset]
        args += ["-deadline", deadline, "-cpu-used", str(cpu_used), "-row-mt", "1"]
        return args + (rate or ["-crf", str(quality), "-b:v", "0"])
    if encoder == "libsvtav1":
        args += ["-preset", str(_SVT_PRESET[preset])]
    else:  # libx264, libx265
        args += ["-preset", preset]
        if encoder == "libx265":
            args += ["-x265-params", "log-level=error"]
    return args + (rate or ["-crf", str(quality)])


# --- transcode and trim -----------------------------------------------------------------------


def plan_encode(
    job: Transcode | Trim,
    info: MediaInfo,
    nvenc: frozenset[str],
    nvenc_problems: Mapping[str, str],
) -> EncodePlan:
    """The output arguments of a transcode (or a re-encoding trim), checked for consistency."""
    options = job.encode
    if info.first("video") is None:
        raise JobError(f"{job.source.field} has no video stream to encode")
    if options.crf is not None and options.bitrate_kbps is not None:
        raise JobError("give input.crf or input.bitrate_kbps, not both")
    container = job.container or natural_container(info)
    codec = options.video_codec or ("vp9" if container == "webm" else "h264")
    if codec not in _CONTAINER_VIDEO[container]:
        raise JobError(
            f"input.video_codec={codec!r} does not go in {container}: choose one of "
            f"{', '.join(_CONTAINER_VIDEO[container])}, or another container"
        )
    problem = nvenc_problems.get(codec, "not tested")
    encoder = choose_encoder(codec, options.encoder, nvenc, problem)
    out = ["-map", "0:v:0", "-sn", "-dn"]
    out += video_args(encoder, codec, options.preset, options.crf, options.bitrate_kbps)
    filters = []
    if options.width or options.height:
        filters.append(f"scale={options.width or -2}:{options.height or -2}")
    if options.fps:
        filters.append(f"fps=fps={options.fps:g}")
    if filters:
        out += ["-vf", ",".join(filters)]
    out += ["-pix_fmt", "yuv420p"]
    if codec == "hevc" and container == "mp4":
        out += ["-tag:v", "hvc1"]  # what Apple's players look for
    audio_args, audio_encoder = _audio_args(options, info, container)
    out += audio_args
    out += ["-f", _FORMAT[container]]
    if container == "mp4":
        out += ["-movflags", "+faststart"]
    return EncodePlan(tuple(out), encoder, audio_encoder, container)


def plan_copy(job: Trim, info: MediaInfo) -> EncodePlan:
    """The output arguments of a stream-copy trim: codecs kept, cut at keyframes."""
    for name in job.encode.asked():
        raise JobError(f"input.{name} needs input.reencode=true: a stream copy keeps the codecs")
    container = job.container or natural_container(info)
    for stream, allowed in (
        (info.first("video"), _COPY_VIDEO[container]),
        (info.first("audio"), _COPY_AUDIO[container]),
    ):
        if stream is not None and allowed is not None and stream.codec not in allowed:
            raise JobError(
                f"the {stream.type} codec {stream.codec} cannot be copied into {container}; "
                f"choose another container or set input.reencode=true"
            )
    out = (
        *("-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy"),
        *("-avoid_negative_ts", "make_zero", "-f", _FORMAT[container]),
    )
    return EncodePlan(out, "copy", "copy" if info.first("audio") else None, container)


def plan_trim(
    job: Trim, info: MediaInfo, nvenc: frozenset[str], nvenc_problems: Mapping[str, str]
) -> EncodePlan:
    """A trim's output arguments: its length, then a re-encode or a stream copy."""
    plan = plan_encode(job, info, nvenc, nvenc_problems) if job.reencode else plan_copy(job, info)
    length = ("-t", seconds(job.end_s - job.start_s))
    return EncodePlan(length + plan.args, plan.encoder, plan.audio_encoder, plan.container)


def _audio_args(
    options: EncodeOptions, info: MediaInfo, container: str
) -> tuple[list[str], str | None]:
    codec = options.audio_codec or ("opus" if container == "webm" else "aac")
    audio = info.first("audio")
    if codec == "none" or audio is None:
        return ["-an"], None
    if codec == "copy":
        allowed = _COPY_AUDIO[container]
        if allowed is not None and audio.codec not in allowed:
            raise JobError(
                f"input.audio_codec='copy': the source's {audio.codec} audio cannot go in "
                f"{container}; choose one of {', '.join(_CONTAINER_AUDIO[container])}"
            )
        return ["-map", f"0:{audio.index}", "-c:a", "copy"], "copy"
    if codec not in _CONTAINER_AUDIO[container]:
        raise JobError(
            f"input.audio_codec={codec!r} does not go in {container}: choose one of "
            f"{', '.join((*_CONTAINER_AUDIO[container], 'copy', 'none'))}"
        )
    encoder = "libopus" if codec == "opus" else "aac"
    kbps = options.audio_bitrate_kbps or (96 if codec == "opus" else 128)
    out = ["-map", f"0:{audio.index}", "-c:a", encoder, "-b:a", f"{kbps}k"]
    if codec == "opus" and audio.sample_rate not in OPUS_RATES:
        out += ["-ar", "48000"]
    return out, encoder


def natural_container(info: MediaInfo) -> str:
    """The container a trim keeps when none is asked: the input's own, where it is ours."""
    if info.container.startswith("mov,"):
        return "mp4"
    if info.container.startswith("matroska"):
        codecs = {s.codec for s in info.streams if s.type in ("video", "audio")}
        return "webm" if codecs <= {"vp8", "vp9", "av1", "opus", "vorbis"} else "mkv"
    return "mkv"


# --- audio and pictures -----------------------------------------------------------------------


def plan_audio(job: ExtractAudio, info: MediaInfo) -> AudioPlan:
    """The output arguments of extract_audio: the first audio stream, re-encoded."""
    audio = info.first("audio")
    if audio is None:
        raise JobError(f"{job.source.field} has no audio stream to extract")
    encoder, muxer, extension = _AUDIO_OUT[job.format]
    rate = job.sample_rate
    if job.format == "opus" and rate is not None and rate not in OPUS_RATES:
        raise JobError(
            f"input.sample_rate={rate} is not allowed with opus: choose one of "
            + ", ".join(str(r) for r in OPUS_RATES)
        )
    if job.audio_bitrate_kbps is not None and job.format == "wav":
        raise JobError("input.audio_bitrate_kbps does not apply to wav (it is uncompressed)")
    out = ["-map", f"0:{audio.index}", "-vn", "-sn", "-dn", "-c:a", encoder]
    if job.audio_bitrate_kbps is not None:
        out += ["-b:a", f"{job.audio_bitrate_kbps}k"]
    if rate is not None:
        out += ["-ar", str(rate)]
    if job.channels is not None:
        out += ["-ac", "1" if job.channels == "mono" else "2"]
    return AudioPlan(tuple(out), encoder, muxer, extension)


def picture_args(job: Thumbnail) -> tuple[str, ...]:
    """The output arguments of one thumbnail (before its single-frame options)."""
    scale = ("-vf", f"scale={job.width}:-1") if job.width else ()
    return ("-map", "0:v:0", *scale, *_IMAGE_OUT[job.format])


def thumbnail_times(job: Thumbnail, info: MediaInfo) -> list[float]:
    """The seconds at which to take the job's pictures, each one where a frame is."""
    duration = video_duration(job, info)
    if job.time_s is not None and job.count is not None:
        raise JobError("give input.time_s or input.count, not both")
    if job.time_s is not None:
        if job.time_s >= duration:
            raise JobError(
                f"input.time_s={job.time_s:g} is past the end of the video ({duration:g} s)"
            )
        times = [job.time_s]
    else:
        count = job.count or 1
        times = [round(duration * (i + 0.5) / count, 3) for i in range(count)]
    # A seek past the last frame's start finds no frame: the last time asked is clamped
    # to where the last frame begins (a 4 fps, 1 s clip has none after 0.75 s).
    video = info.first("video")
    frame = 1 / video.fps if video is not None and video.fps else duration * 0.05
    latest = max(0.0, round(duration - frame, 3))
    return [min(at, latest) for at in times]


def frames_args(job: Frames, info: MediaInfo) -> tuple[str, ...]:
    """The output arguments of `frames` (before the pattern of file names), refused when it
    would make more than MAX_PICTURES pictures."""
    duration = video_duration(job, info)
    expected = math.ceil(duration / job.interval_s)
    if expected > MAX_PICTURES:
        raise JobError(
            f"input.interval_s={job.interval_s:g} makes {expected} frames of a {duration:g} s "
            f"video; the limit is {MAX_PICTURES}: choose a longer interval"
        )
    scale = f",scale={job.width}:-1" if job.width else ""
    fps = f"fps=fps={1 / job.interval_s:.6f}{scale}"
    return ("-map", "0:v:0", "-vf", fps, *_IMAGE_OUT[job.format])


def video_duration(job: Thumbnail | Frames, info: MediaInfo) -> float:
    """The input's duration, for an action that needs a video stream."""
    if info.first("video") is None:
        raise JobError(f"{job.source.field} has no video stream")
    if info.duration_s is None:  # check_input refuses these first
        raise JobError(f"{job.source.field} has no duration FFmpeg can read")
    return info.duration_s
