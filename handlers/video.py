"""HANDLER_TYPE=video: probe, transcode, cut and take pictures of videos with FFmpeg.

Actions, chosen by "action", on `video` (https/s3/volume URL) or `video_base64`:
  probe          container, duration, size and streams (codec, resolution, fps, sample rate)
  transcode      to mp4, webm or mkv with h264, hevc, av1 or vp9; crf or bitrate, preset,
                 width/height, fps; audio aac, opus, copy or none
  extract_audio  wav, mp3, aac or opus; sample_rate; mono or stereo
  thumbnail      one picture at time_s, or `count` evenly spaced; jpg, png or webp; width
  frames         one picture every interval_s seconds, as a zip
  trim           start_s to end_s; a stream copy, or re-encoded with reencode: true

FFmpeg: imageio-ffmpeg's static binary runs every encode, PyAV probes (handlers/media.py says
why). Encoders: libx264 (h264), libx265 (hevc), libsvtav1 (av1), libvpx-vp9 (vp9), aac,
libopus, libmp3lame, pcm_s16le; mjpeg, png, libwebp for pictures. On a GPU, setup() tries a
one-frame encode with h264_nvenc, hevc_nvenc and av1_nvenc once; `encoder: auto` (the
default) uses NVENC for the codecs whose test passed, `cpu` never does, and `nvenc` is
refused with the reason when the test failed. Every result says which `encoder` ran.

No job input reaches ffmpeg as text: every option is checked against an allow-list (choices
and ranges below), and the command line is built here from checked values only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .base import Handler, JobContext
from .config import VIDEO_MAX_OUTPUT_MB, VIDEO_MAX_PIXELS, HandlerConfig
from .errors import JobError
from .media import MediaInfo, encoder_works, find_ffmpeg, input_args, probe, run_ffmpeg, seconds
from .validation import Field, validate

LOG = logging.getLogger("runpod-slim")

ACTIONS = ("probe", "transcode", "extract_audio", "thumbnail", "frames", "trim")
CONTAINERS = ("mp4", "webm", "mkv")
VIDEO_CODECS = ("h264", "hevc", "av1", "vp9")
AUDIO_CODECS = ("aac", "opus", "copy", "none")
PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
ENCODER_MODES = ("auto", "cpu", "nvenc")
AUDIO_FORMATS = ("wav", "mp3", "aac", "opus")
SAMPLE_RATES = (8000, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
IMAGE_FORMATS = ("jpg", "png", "webp")
MAX_BASE64_CHARS = 14_000_000  # ~10 MB decoded: RunPod's /run payload limit
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
_IMAGE_ENCODER = {"jpg": "mjpeg", "png": "png", "webp": "libwebp"}


def _even(value: int) -> str | None:
    return None if value % 2 == 0 else "must be even (4:2:0 video has even sizes)"


_SOURCE = {
    "video": Field(str, help="https://..., s3://bucket/key or volume://path"),
    "video_base64": Field(str, max_length=MAX_BASE64_CHARS),
    "credentials": Field(
        dict, secret=True, help="endpoint_url, access_key_id, secret_access_key, region"
    ),
}
_DESTINATION = {"destination": Field(str, help="s3://bucket/key or volume://path")}
_ENCODE = {
    "video_codec": Field(str, choices=VIDEO_CODECS),
    "crf": Field(int, minimum=0, maximum=63),
    "bitrate_kbps": Field(int, minimum=50, maximum=200_000),
    "preset": Field(str, default="medium", choices=PRESETS),
    "width": Field(int, minimum=16, maximum=7680, check=_even),
    "height": Field(int, minimum=16, maximum=4320, check=_even),
    "fps": Field(float, minimum=1, maximum=240),
    "audio_codec": Field(str, choices=AUDIO_CODECS),
    "audio_bitrate_kbps": Field(int, minimum=8, maximum=512),
    "encoder": Field(str, default="auto", choices=ENCODER_MODES),
}
_PICTURE = {
    "format": Field(str, default="jpg", choices=IMAGE_FORMATS),
    "width": Field(int, minimum=16, maximum=7680),
}
FIELDS: dict[str, dict[str, Field]] = {
    "probe": {**_SOURCE},
    "transcode": {
        **_SOURCE,
        **_DESTINATION,
        "container": Field(str, default="mp4", choices=CONTAINERS),
        **_ENCODE,
    },
    "extract_audio": {
        **_SOURCE,
        **_DESTINATION,
        "format": Field(str, default="wav", choices=AUDIO_FORMATS),
        "sample_rate": Field(int, choices=SAMPLE_RATES),
        "channels": Field(str, choices=("mono", "stereo")),
        "audio_bitrate_kbps": Field(int, minimum=8, maximum=512),
    },
    "thumbnail": {
        **_SOURCE,
        **_DESTINATION,
        **_PICTURE,
        "time_s": Field(float, minimum=0),
        "count": Field(int, minimum=1, maximum=100),
    },
    "frames": {
        **_SOURCE,
        **_DESTINATION,
        **_PICTURE,
        "interval_s": Field(float, default=1.0, minimum=0.04, maximum=3600),
    },
    "trim": {
        **_SOURCE,
        **_DESTINATION,
        "start_s": Field(float, default=0.0, minimum=0),
        "end_s": Field(float, required=True, minimum=0),
        "reencode": Field(bool, default=False),
        "container": Field(str, choices=CONTAINERS),
        **_ENCODE,
    },
}


@dataclass(frozen=True)
class Encoders:
    """What this worker can encode with: the ffmpeg binary, and the codecs NVENC passed."""

    ffmpeg: str
    nvenc: frozenset[str] = frozenset()
    nvenc_problems: Mapping[str, str] = field(default_factory=dict)  # codec -> why not

    @property
    def nvenc_problem(self) -> str:
        """Why NVENC is unavailable for h264 (the first the worker tests), or ''."""
        return self.nvenc_problems.get("h264", "")


@dataclass(frozen=True)
class EncodePlan:
    """The output half of an ffmpeg command, and what it will run."""

    args: list[str]
    encoder: str  # the video encoder ("copy" for a stream copy)
    audio_encoder: str | None
    container: str


class VideoHandler(Handler):
    """Media jobs with FFmpeg; setup() finds the binary and tests NVENC once."""

    name: ClassVar[str] = "video"
    profile: ClassVar[str] = "video"
    examples: ClassVar[tuple[Mapping[str, Any], ...]] = ()  # filled in below: a clip inline

    def __init__(self, config: HandlerConfig) -> None:
        super().__init__(config)
        self.encoders: Encoders | None = None

    def setup(self) -> None:
        import av

        ffmpeg = find_ffmpeg()
        ok, problems = set(), {}
        for codec, encoder in NVENC_ENCODERS.items():
            problem = encoder_works(ffmpeg, encoder)
            if problem is None:
                ok.add(codec)
            else:
                problems[codec] = (
                    problem if problem.startswith(encoder) else f"{encoder}: {problem}"
                )
        self.encoders = Encoders(ffmpeg, frozenset(ok), problems)
        cpu = ", ".join(CPU_ENCODERS[c] for c in VIDEO_CODECS if c not in ok)
        gpu = ", ".join(NVENC_ENCODERS[c] for c in VIDEO_CODECS if c in ok)
        LOG.info(
            "video: ffmpeg %s, PyAV %s; NVENC %s; encoders: %s",
            ffmpeg,
            av.__version__,
            f"works ({gpu})" if ok else f"unavailable ({'; '.join(problems.values())})",
            ", ".join(x for x in (gpu, cpu) if x),
        )

    async def run(self, job: JobContext) -> dict[str, Any]:
        action = job.input.get("action")
        if action not in ACTIONS:
            validate({"action": action}, {"action": Field(str, required=True, choices=ACTIONS)})
        args = validate({k: v for k, v in job.input.items() if k != "action"}, FIELDS[str(action)])
        _check_times(str(action), args)
        encoders = self.encoders
        if encoders is None:
            raise JobError("the video handler was not set up (setup() did not run)")
        # The whole job runs under its time limit: on expiry the awaits are cancelled and
        # run_ffmpeg kills ffmpeg (a download checks the deadline at every read itself).
        result: dict[str, Any] = await job.within_time(self._run(job, str(action), args, encoders))
        return {"action": action, **result}

    async def _run(
        self, job: JobContext, action: str, args: dict[str, Any], encoders: Encoders
    ) -> dict[str, Any]:
        path = await asyncio.to_thread(_fetch, job, args)
        info = await asyncio.to_thread(probe, path, _source_field(args))
        _check_input(info, args, job.config.video_max_duration_s, action)
        if action == "probe":
            return info.as_dict()
        _check_pixels(info, args, job.config.video_max_pixels, action)
        work = getattr(self, f"_{action}")
        result: dict[str, Any] = await work(job, args, path, info, encoders)
        return result

    async def _transcode(
        self, job: JobContext, args: dict[str, Any], path: Path, info: MediaInfo, enc: Encoders
    ) -> dict[str, Any]:
        plan = plan_encode(args, info, enc.nvenc, enc.nvenc_problems)
        return await self._encode(job, args, path, info, plan, "transcode", None, info.duration_s)

    async def _trim(
        self, job: JobContext, args: dict[str, Any], path: Path, info: MediaInfo, enc: Encoders
    ) -> dict[str, Any]:
        start, end = args["start_s"], args["end_s"]
        if args["reencode"]:
            plan = plan_encode(args, info, enc.nvenc, enc.nvenc_problems)
        else:
            plan = plan_copy(args, info)
        length = end - start
        plan.args[:0] = ["-t", seconds(length)]
        return await self._encode(job, args, path, info, plan, "trim", start, length)

    async def _encode(
        self,
        job: JobContext,
        args: dict[str, Any],
        path: Path,
        info: MediaInfo,
        plan: EncodePlan,
        label: str,
        start: float | None,
        duration: float | None,
    ) -> dict[str, Any]:
        assert self.encoders is not None
        out = job.workdir / f"output.{plan.container}"
        LOG.info("job %s: %s with %s (%s)", job.id, label, plan.encoder, plan.container)
        await run_ffmpeg(
            self.encoders.ffmpeg,
            [*input_args(path, start), *plan.args, *_size_limit(job), f"file:{out}"],
            label=label,
            duration_s=duration,
            progress=job.progress,
        )
        _check_output(job, out)
        made = await asyncio.to_thread(probe, out, "the output")
        delivered = await asyncio.to_thread(_deliver, job, args, out)
        return {
            "encoder": plan.encoder,
            "audio_encoder": plan.audio_encoder,
            "container": plan.container,
            "duration_s": made.duration_s,
            "streams": [s["codec"] for s in made.as_dict()["streams"]],
            **delivered,
        }

    async def _extract_audio(
        self, job: JobContext, args: dict[str, Any], path: Path, info: MediaInfo, enc: Encoders
    ) -> dict[str, Any]:
        audio = info.first("audio")
        if audio is None:
            raise JobError(f"{_source_field(args)} has no audio stream to extract")
        encoder, muxer, ext = _AUDIO_OUT[args["format"]]
        rate = args["sample_rate"]
        if args["format"] == "opus" and rate is not None and rate not in OPUS_RATES:
            raise JobError(
                f"input.sample_rate={rate} is not allowed with opus: choose one of "
                + ", ".join(str(r) for r in OPUS_RATES)
            )
        if args["audio_bitrate_kbps"] is not None and args["format"] == "wav":
            raise JobError("input.audio_bitrate_kbps does not apply to wav (it is uncompressed)")
        out_args = ["-map", f"0:{audio.index}", "-vn", "-sn", "-dn", "-c:a", encoder]
        if args["audio_bitrate_kbps"] is not None:
            out_args += ["-b:a", f"{args['audio_bitrate_kbps']}k"]
        if rate is not None:
            out_args += ["-ar", str(rate)]
        if args["channels"] is not None:
            out_args += ["-ac", "1" if args["channels"] == "mono" else "2"]
        out = job.workdir / f"audio.{ext}"
        await run_ffmpeg(
            enc.ffmpeg,
            [*input_args(path), *out_args, *_size_limit(job), "-f", muxer, f"file:{out}"],
            label="extract audio",
            duration_s=info.duration_s,
            progress=job.progress,
        )
        _check_output(job, out)
        made = await asyncio.to_thread(probe, out, "the output")
        stream = made.first("audio")
        delivered = await asyncio.to_thread(_deliver, job, args, out)
        return {
            "encoder": encoder,
            "format": args["format"],
            "duration_s": made.duration_s,
            "sample_rate": stream.sample_rate if stream else None,
            "channels": stream.channels if stream else None,
            **delivered,
        }

    async def _thumbnail(
        self, job: JobContext, args: dict[str, Any], path: Path, info: MediaInfo, enc: Encoders
    ) -> dict[str, Any]:
        duration = _video_duration(info, args)
        if args["time_s"] is not None and args["count"] is not None:
            raise JobError("give input.time_s or input.count, not both")
        if args["time_s"] is not None:
            if args["time_s"] >= duration:
                raise JobError(
                    f"input.time_s={args['time_s']:g} is past the end of the video ({duration:g} s)"
                )
            times = [args["time_s"]]
        else:
            count = args["count"] or 1
            times = [round(duration * (i + 0.5) / count, 3) for i in range(count)]
        # A seek past the last frame's start finds no frame: the last time asked is clamped
        # to where the last frame begins (a 4 fps, 1 s clip has none after 0.75 s).
        video = info.first("video")
        frame = 1 / video.fps if video is not None and video.fps else duration * 0.05
        latest = max(0.0, round(duration - frame, 3))
        times = [min(at, latest) for at in times]
        fmt = args["format"]
        pictures = []
        for number, at in enumerate(times, 1):
            out = job.workdir / f"thumbnail-{number:03d}.{fmt}"
            await run_ffmpeg(
                enc.ffmpeg,
                [
                    *input_args(path, at),
                    *_picture_args(args),
                    "-frames:v",
                    "1",
                    "-update",
                    "1",
                    "-f",
                    "image2",
                    f"file:{out}",
                ],
                label="make a thumbnail",
            )
            if not out.is_file():
                raise JobError(f"no frame was found at {at:g} s in {_source_field(args)}")
            pictures.append((at, out))
        if len(pictures) == 1:
            delivered = await asyncio.to_thread(_deliver, job, args, pictures[0][1])
            return {"encoder": _IMAGE_ENCODER[fmt], "format": fmt, "time_s": times[0], **delivered}
        results = []
        for at, out in pictures:
            where = args["destination"]
            where = f"{where.rstrip('/')}/{out.name}" if where else None
            delivered = await asyncio.to_thread(_deliver, job, {"destination": where}, out)
            results.append({"time_s": at, **delivered})
        return {"encoder": _IMAGE_ENCODER[fmt], "format": fmt, "thumbnails": results}

    async def _frames(
        self, job: JobContext, args: dict[str, Any], path: Path, info: MediaInfo, enc: Encoders
    ) -> dict[str, Any]:
        duration = _video_duration(info, args)
        interval = args["interval_s"]
        expected = math.ceil(duration / interval)
        if expected > MAX_PICTURES:
            raise JobError(
                f"input.interval_s={interval:g} makes {expected} frames of a {duration:g} s "
                f"video; the limit is {MAX_PICTURES}: choose a longer interval"
            )
        fmt = args["format"]
        folder = job.workdir / "frames"
        folder.mkdir()
        scale = f",scale={args['width']}:-1" if args["width"] else ""
        await run_ffmpeg(
            enc.ffmpeg,
            [
                *input_args(path),
                "-map",
                "0:v:0",
                "-vf",
                f"fps=fps={1 / interval:.6f}{scale}",
                *_IMAGE_OUT[fmt],
                "-f",
                "image2",
                f"file:{folder}/frame-%05d.{fmt}",
            ],
            label="extract frames",
            duration_s=duration,
            progress=job.progress,
        )
        names = sorted(p.name for p in folder.iterdir())
        archive = job.workdir / "frames.zip"

        def pack() -> None:
            # Pictures are compressed already: stored, not deflated again.
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
                for name in names:
                    zipped.write(folder / name, name)

        await asyncio.to_thread(pack)
        delivered = await asyncio.to_thread(_deliver, job, args, archive)
        return {
            "encoder": _IMAGE_ENCODER[fmt],
            "format": fmt,
            "count": len(names),
            "interval_s": interval,
            "files": names,
            **delivered,
        }


# --- planning: pure, from checked values ------------------------------------------------------


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


def plan_encode(
    args: Mapping[str, Any],
    info: MediaInfo,
    nvenc: frozenset[str],
    nvenc_problems: Mapping[str, str],
) -> EncodePlan:
    """The output arguments of a transcode (or a re-encoding trim), checked for consistency."""
    if info.first("video") is None:
        raise JobError(f"{_source_field(args)} has no video stream to encode")
    if args["crf"] is not None and args["bitrate_kbps"] is not None:
        raise JobError("give input.crf or input.bitrate_kbps, not both")
    container = args["container"] or _natural_container(info)
    codec = args["video_codec"] or ("vp9" if container == "webm" else "h264")
    if codec not in _CONTAINER_VIDEO[container]:
        raise JobError(
            f"input.video_codec={codec!r} does not go in {container}: choose one of "
            f"{', '.join(_CONTAINER_VIDEO[container])}, or another container"
        )
    problem = nvenc_problems.get(codec, "not tested")
    encoder = choose_encoder(codec, args["encoder"], nvenc, problem)
    out = ["-map", "0:v:0", "-sn", "-dn"]
    out += video_args(encoder, codec, args["preset"], args["crf"], args["bitrate_kbps"])
    filters = []
    if args["width"] or args["height"]:
        filters.append(f"scale={args['width'] or -2}:{args['height'] or -2}")
    if args["fps"]:
        filters.append(f"fps=fps={args['fps']:g}")
    if filters:
        out += ["-vf", ",".join(filters)]
    out += ["-pix_fmt", "yuv420p"]
    if codec == "hevc" and container == "mp4":
        out += ["-tag:v", "hvc1"]  # what Apple's players look for
    audio_encoder = _audio_args(args, info, container, out)
    out += ["-f", _FORMAT[container]]
    if container == "mp4":
        out += ["-movflags", "+faststart"]
    return EncodePlan(out, encoder, audio_encoder, container)


def plan_copy(args: Mapping[str, Any], info: MediaInfo) -> EncodePlan:
    """The output arguments of a stream-copy trim: codecs kept, cut at keyframes."""
    for name in _ENCODE:
        if name not in ("preset", "encoder") and args.get(name) is not None:
            raise JobError(
                f"input.{name} needs input.reencode=true: a stream copy keeps the codecs"
            )
    container = args["container"] or _natural_container(info)
    out = ["-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy"]
    for stream, allowed in (
        (info.first("video"), _COPY_VIDEO[container]),
        (info.first("audio"), _COPY_AUDIO[container]),
    ):
        if stream is not None and allowed is not None and stream.codec not in allowed:
            raise JobError(
                f"the {stream.type} codec {stream.codec} cannot be copied into {container}; "
                f"choose another container or set input.reencode=true"
            )
    out += ["-avoid_negative_ts", "make_zero", "-f", _FORMAT[container]]
    return EncodePlan(out, "copy", "copy" if info.first("audio") else None, container)


def _audio_args(
    args: Mapping[str, Any], info: MediaInfo, container: str, out: list[str]
) -> str | None:
    codec = args["audio_codec"] or ("opus" if container == "webm" else "aac")
    audio = info.first("audio")
    if codec == "none" or audio is None:
        out.append("-an")
        return None
    if codec == "copy":
        allowed = _COPY_AUDIO[container]
        if allowed is not None and audio.codec not in allowed:
            raise JobError(
                f"input.audio_codec='copy': the source's {audio.codec} audio cannot go in "
                f"{container}; choose one of {', '.join(_CONTAINER_AUDIO[container])}"
            )
        out += ["-map", f"0:{audio.index}", "-c:a", "copy"]
        return "copy"
    if codec not in _CONTAINER_AUDIO[container]:
        raise JobError(
            f"input.audio_codec={codec!r} does not go in {container}: choose one of "
            f"{', '.join((*_CONTAINER_AUDIO[container], 'copy', 'none'))}"
        )
    encoder = "libopus" if codec == "opus" else "aac"
    kbps = args["audio_bitrate_kbps"] or (96 if codec == "opus" else 128)
    out += ["-map", f"0:{audio.index}", "-c:a", encoder, "-b:a", f"{kbps}k"]
    if codec == "opus" and audio.sample_rate not in OPUS_RATES:
        out += ["-ar", "48000"]
    return encoder


def _natural_container(info: MediaInfo) -> str:
    """The container a trim keeps when none is asked: the input's own, where it is ours."""
    if info.container.startswith("mov,"):
        return "mp4"
    if info.container.startswith("matroska"):
        codecs = {s.codec for s in info.streams if s.type in ("video", "audio")}
        return "webm" if codecs <= {"vp8", "vp9", "av1", "opus", "vorbis"} else "mkv"
    return "mkv"


def _picture_args(args: Mapping[str, Any]) -> list[str]:
    scale = ["-vf", f"scale={args['width']}:-1"] if args["width"] else []
    return ["-map", "0:v:0", *scale, *_IMAGE_OUT[args["format"]]]


# --- checks and I/O ---------------------------------------------------------------------------


def _check_times(action: str, args: Mapping[str, Any]) -> None:
    if action == "trim" and args["end_s"] <= args["start_s"]:
        raise JobError(
            f"input.end_s={args['end_s']:g} must be after input.start_s={args['start_s']:g}"
        )


def _size_limit(job: JobContext) -> list[str]:
    # ffmpeg stops writing at this size (and exits 0): _check_output tells the job.
    return ["-fs", str(job.config.video_max_output_bytes)]


def _check_output(job: JobContext, out: Path) -> None:
    limit = job.config.video_max_output_bytes
    if out.is_file() and out.stat().st_size >= limit:
        raise JobError(
            f"the output reached {limit / 1e6:.0f} MB, the limit "
            f"({VIDEO_MAX_OUTPUT_MB}); ask for a lower bitrate, size or a shorter part"
        )


def _check_pixels(info: MediaInfo, args: Mapping[str, Any], limit: int, action: str) -> None:
    """Refuse an output frame over `limit` pixels (RUNPOD_SLIM_VIDEO_MAX_PIXELS).

    The size is what the scale filter will make: both sides given, or one side and the
    source's aspect ratio, or the source's own size when nothing is asked.
    """
    video = info.first("video")
    if video is None or not video.width or not video.height:
        return
    if action == "trim" and not args.get("reencode"):
        return  # a stream copy decodes nothing
    if action == "extract_audio":
        return
    width, height = args.get("width"), args.get("height")
    if action in ("thumbnail", "frames"):
        height = None
    if width and height:
        pixels = width * height
    elif width:
        pixels = width * width * video.height / video.width
    elif height:
        pixels = height * height * video.width / video.height
    else:
        pixels = video.width * video.height
    if pixels > limit:
        raise JobError(
            f"the output would be {int(pixels):,} pixels a frame; the limit is {limit:,} "
            f"({VIDEO_MAX_PIXELS}): ask for a smaller input.width or input.height"
        )


def _check_input(info: MediaInfo, args: Mapping[str, Any], limit_s: int, action: str) -> None:
    where = _source_field(args)
    if not any(s.type in ("video", "audio") for s in info.streams):
        raise JobError(f"{where} has no video or audio stream")
    if info.duration_s is None:
        raise JobError(f"{where} has no duration FFmpeg can read; it may be truncated")
    if info.duration_s > limit_s:
        raise JobError(
            f"{where} is {info.duration_s:g} s long; the limit is {limit_s} s "
            f"(RUNPOD_SLIM_VIDEO_MAX_DURATION_S)"
        )
    if action == "trim" and args["start_s"] >= info.duration_s:
        raise JobError(
            f"input.start_s={args['start_s']:g} is past the end of the video "
            f"({info.duration_s:g} s)"
        )
    if action == "trim" and args["end_s"] > info.duration_s + 0.5:
        raise JobError(
            f"input.end_s={args['end_s']:g} is past the end of the video ({info.duration_s:g} s)"
        )


def _video_duration(info: MediaInfo, args: Mapping[str, Any]) -> float:
    if info.first("video") is None:
        raise JobError(f"{_source_field(args)} has no video stream")
    assert info.duration_s is not None  # _check_input refused it otherwise
    return info.duration_s


def _source_field(args: Mapping[str, Any]) -> str:
    return "input.video_base64" if args.get("video_base64") is not None else "input.video"


def _fetch(job: JobContext, args: Mapping[str, Any]) -> Path:
    path, _ = job.fetch("video", args["video"], args["video_base64"], job.workdir / "source")
    return path


def _deliver(job: JobContext, args: Mapping[str, Any], path: Path) -> dict[str, Any]:
    return job.deliver(path, args.get("destination"))


# A one-second 64x64 h264 + aac mp4 (4 KB), made with the env's ffmpeg from testsrc2 and a
# sine: the examples need no network and no file on the volume to start from.
EXAMPLE_CLIP = (
    "AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDEAAAXxbW9vdgAAAGxtdmhkAAAAAAAAAAAAAAAAAAA+gAAAPoAA"
    "AQAAAQAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAwAAAqN0cmFrAAAAXHRraGQAAAADAAAAAAAAAAAAAAABAAAAAAAAPoAAAAAAAAAAAAAAAAAAAAAAAAEA"
    "AAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAEAAAABAAAAAAAAkZWR0cwAAABxlbHN0AAAAAAAAAAEAAD6A"
    "AAAgAAABAAAAAAIbbWRpYQAAACBtZGhkAAAAAAAAAAAAAAAAAABAAAAAQABVxAAAAAAALWhkbHIAAAAAAAAAAHZpZGUA"
    "AAAAAAAAAAAAAABWaWRlb0hhbmRsZXIAAAABxm1pbmYAAAAUdm1oZAAAAAEAAAAAAAAAAAAAACRkaW5mAAAAHGRyZWYA"
    "AAAAAAAAAQAAAAx1cmwgAAAAAQAAAYZzdGJsAAAAwnN0c2QAAAAAAAAAAQAAALJhdmMxAAAAAAAAAAEAAAAAAAAAAAAA"
    "AAAAAAAAAEAAQABIAAAASAAAAAAAAAABDExhdmMgbGlieDI2NAAAAAAAAAAAAAAAAAAAAAAAAAAAGP//AAAAOGF2Y0MB"
    "ZAAK/+EAGmdkAAqscgREJsBEAAADAAQAAAMAIDxIlhGAAQAHaOhDgTSyLP34+AAAAAAQcGFzcAAAAAEAAAABAAAAFGJ0"
    "cnQAAAAAAAATAAAAAAAAAAAYc3R0cwAAAAAAAAABAAAABAAAEAAAAAAUc3RzcwAAAAAAAAABAAAAAQAAAChjdHRzAAAA"
    "AAAAAAMAAAABAAAgAAAAAAEAAEAAAAAAAgAAEAAAAAAoc3RzYwAAAAAAAAACAAAAAQAAAAIAAAABAAAAAgAAAAEAAAAB"
    "AAAAJHN0c3oAAAAAAAAAAAAAAAQAAAFAAAAArQAAADsAAAA4AAAAHHN0Y28AAAAAAAAAAwAABiEAAAirAAAKkgAAAp10"
    "cmFrAAAAXHRraGQAAAADAAAAAAAAAAAAAAACAAAAAAAAPoAAAAAAAAAAAAAAAAEBAAAAAAEAAAAAAAAAAAAAAAAAAAAB"
    "AAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAkZWR0cwAAABxlbHN0AAAAAAAAAAEAAD6AAAAEAAABAAAAAAIVbWRp"
    "YQAAACBtZGhkAAAAAAAAAAAAAAAAAAA+gAAAQoBVxAAAAAAALWhkbHIAAAAAAAAAAHNvdW4AAAAAAAAAAAAAAABTb3Vu"
    "ZEhhbmRsZXIAAAABwG1pbmYAAAAQc21oZAAAAAAAAAAAAAAAJGRpbmYAAAAcZHJlZgAAAAAAAAABAAAADHVybCAAAAAB"
    "AAABhHN0YmwAAAB+c3RzZAAAAAAAAAABAAAAbm1wNGEAAAAAAAAAAQAAAAAAAAAAAAEAEAAAAAA+gAAAAAAANmVzZHMA"
    "AAAAA4CAgCUAAgAEgICAF0AVAAAAAAAziwAAM4sFgICABRQIVuUABoCAgAECAAAAFGJ0cnQAAAAAAAAziwAAM4sAAAAg"
    "c3R0cwAAAAAAAAACAAAAEAAABAAAAAABAAACgAAAADRzdHNjAAAAAAAAAAMAAAABAAAAAQAAAAEAAAACAAAABAAAAAEA"
    "AAADAAAADAAAAAEAAABYc3RzegAAAAAAAAAAAAAAEQAAAJ0AAACMAAAAbQAAAFoAAABZAAAAWAAAAF0AAABfAAAAXgAA"
    "AFkAAABjAAAAYgAAAGIAAABeAAAAXwAAAHUAAABuAAAAHHN0Y28AAAAAAAAAAwAACA4AAAjmAAAKygAAABpzZ3BkAQAA"
    "AHJvbGwAAAACAAAAAf//AAAAHHNiZ3AAAAAAcm9sbAAAAAEAAAARAAAAAQAAAD11ZHRhAAAANW1ldGEAAAAAAAAAIWhk"
    "bHIAAAAAAAAAAG1kaXJhcHBsAAAAAAAAAAAAAAAACGlsc3QAAAAIZnJlZQAACUNtZGF0AAABPGWIgQAvdlX623K9AVpn"
    "2VnlEe/z2RcFD/P2ed4XVCxv9FSn//8P+vF/Ngm4M2z5LfK6IUgPsSAn7Nqhxve/8AQkRRhFtXGS/VaGQO15bAPZQoeC"
    "AHysWiVI33O/fQJXC+rft4cqLxNSjbMwe0bFM2+1IRZL28M/q/NQJcCSuDs0SBwGQh0mirc6XSNFbJ1KxMqHhKP/Mwbz"
    "ZtoI4ptQ8Sa6IBCIZ+S12zInusxMHX3aeUIVaCJYMVqOcYNfF+Ple519cv/6GwhOeUjd53gDKzxa8DnX5kolHbo98mYL"
    "y9OiZVHnK0X/ASNZLwoaUJs/ByQodJiWOQuTGelVMFhGwkGGwKL8EbbSu6gvfY8VRAH4SkVNAPIVip7CmUllC3BPdaRe"
    "DtrT6FioI3smAh/9JXW3zdOiWkIU7ce4EuEAAACpQZoIbYiP+YCm9OUNiUyj+SpPrPi4mtatepEryMKk1ibrJZ7JC5GR"
    "qdVYbSr+5XScHyB8rlX09ICQwSNoLaNg+p0SmzvAxrahljpD3Qsjo/dDT0+aB4lJsbsgTrCBsyKcdSpne1nnlAqovWwG"
    "hVjOP5OcVcI23wdSTtnRPLTKMTaLyxjBQKJcBL+ZjJQq7aea3Aq48lU2ATxPZCn22iHSyGWI1P+WBbIDYdwATGF2YzYz"
    "LjEuMTAyAAJEnlMYaPVKzx8199QTcSRESIOtdV6t1XauM8e4z2LrPYvgerei9a8p4blPQuwz1ZyWgprr0HbP9+fwa/1/"
    "j0NNOz0bJUsk+tlKpSqMrsJsMZMZGkaRpJnmeYGBkQMDGzZuVEillNmzcsssssssssssssssssssssssssssssssssss"
    "sssssssssssssvAAAAA3QZ4QJxEf/ry1xQDptQfj9n+Na+5hn30dGsSl98bDLvcw6BKVI2n9LhgmENp45yJPXhB7NORj"
    "rQEElNoJdQS6sl1ZTp//o/+/483qa1+f/9X/3/XrjVuOf/8n/r/PWuJd7//x/+f+POtScBLxnueeeeeCXkyf0pdWjykn"
    "Spip3p53p53p53uad6dSnkznOp57mqz96jn357P30J0nZC29zc70/O9DzvfL6PfL6fRnyO88nz2VfTn0j7dGokDAwMSH"
    "Mg2fAPjvKEQ6ITxMz/t3j9p+OL1c1q1y5Lq99Sgms21ZUueeO/mfeEZPhtEEzIggsfNfPlRoKeVGgoPf30D4+Mwd9yGT"
    "4MM/voGT4bGf3hGT4zDP76A/8Zg776EP/E1hT+JYPt4Xf+H8DyeEWP4p8ADwLxjSJiHJ19pM//5V//71mq45VJvq9+OO"
    "Oda7DOz44dchuzmTO1dNbOyl/A/iIPN3Y1410uzsTOzgTLHVqRaCcUzCzm0mCKxFYqkc5KD1iKZiZiKZoJxaPADuLxDO"
    "NCnBfhK//t/+P/+0uTjuUONb8XFoAkJ+U/WZpjk353/N/m6o2fgeaDz+bn2f5j0000xyaBc2a0WqngZjEse6mE4qJ4mc"
    "wJlSD1k8S5BlKhtJxe14AAAANAGeGE1Ij+pBOQY8IrvT7rMLryBMsCaP8dI9D9gLRGvEVoBEV0FPez7IT8yziljLBgYK"
    "acAA7C8Q1jYZyOc1X/9z+v//01mt5F8/E8FkgssvDC16AZqz+ufTNWgFeT5MmEoAjN2NbBlZOsLBwpHApFyK5BYwsxyS"
    "K6YIMhFY2U4PaJ4EiLMUD2ScXt+AAPIvIExHExDk9vkf/6Z//56q61mSq1Pjx2lca5ARBFRpUdk7OxG7VtbTXS5FfW/7"
    "yd3XXT3U4Uuzm7ObtW8NbkpRXSxrmJM8okXTguljZyCRRM0CCxgZTGmVTi0+AO4vGNIqGc05us//tf8f/9pKSqtvU67w"
    "vOKDs7PNJQ7OmE0k0k0miSapDpv+l8TJqN6qsNCriXJLlw52dnk7PCUItM7rWPFSPLJFyCpid4xM5RM/wJYVyqRhTNNO"
    "LecA6C8QtlQRyZyl//3v0//763crNZUdO0q7wHtugN0WjA9R/ybAxsAwBR9Rzuul4BTkZtDW0NbkTgZEDA77JFQi3ieB"
    "lMTOeTILkFiDKYWWLSTPkUsbfGJlKBdOL23AAOgvGNIoGc1clf/57//86rFzGXL657ubvjYxwpwprpFnZ77aa6Xx3U10"
    "qb/z3/eaB2WlupN1RgRSCJerq0SLEViC5BY9AmCCiVWYokVTioRWIJGNI0U4rcAA5i8Y1iYhyX83T/+x7//x+ZFUGcef"
    "fvyZ0GOGjDw7fD8s7PjJNJNLNq0atAgCXp2WBvAB6tU0nq1eqSaSaSZ2GYdrj2G0RWSxsh3WY2kyhAIrFWeC5F9qniCK"
    "ZBM9x34vkeAA5C8Y1jYZnVBjV4a3//S+3///SsJfia41679qhAACsLEkLCxLC5fLv8cs53AG5JidgrgCm4o62j/elueS"
    "wcLAwCZUi0DutyQTHkCBQUCAkIDYYgUCB56F7FzAkUTPYJxbvgDqLyDSKBkI4uPlp//0/f//zqVNxW5XtreZcy7CKSKV"
    "GlR5QRBEipFKTZUZVjZIpjnf0+ZydNYyrGVLSRSRVPPln9epVKKidFyKRspFEiqVXmDGkUSi/hncCqZUPrnfi9rwAOov"
    "GNY2Ecz3uV//e9f/+0qtTm96X59c6lanIwxwmwxw0Ojo8ztJNqmkmkQATT8CXxPIBIL+cKtqmqmkZ22dkkbKUVyDIQZz"
    "0SQSisRZyDPBpJGilBYxJEEjSTivwADmLxBwOxsM5OSZ//Wz//zdayby5WtVlDQJasvkowNgsgtirtJ8yfMKAEfq9BFb"
    "QBMEPdC306uE6wsLCw8LwckiulVMxrH6YgoRDA8AiyxVSPapY27PFZzEHuu/3W+4ASgvIWk0yqr/pf/IlS5JESRJBUEJ"
    "1eOXIyKghOrnloVEx5PLq36HAc5fj1AHO3cdComEJttnAxsA8+IMD2xDA9sQwPbEMD2xDA9sQwPbEMD1iGB6xCh6xCh6"
    "xCh6xCg9YhQ9Yhx6xCg9YhQesAUHrAFB6wBXAS4vKEQ4KVF/pKdvaIuS0SSRJAFkY0lNZsUuz6MmbPoE00JbOTwe5xST"
    "JVTRwskm+M3voyN54cjeeHI3nhyN54cjeeHI3nLIbOWQ2cshs5ZDZyyGzlkNnLIbOWQ2cvg3uXwb3L4N7l8G9y+B78A="
)

VideoHandler.examples = (
    {"action": "probe", "video_base64": EXAMPLE_CLIP},
    {
        "action": "transcode",
        "video_base64": EXAMPLE_CLIP,
        "container": "webm",
        "video_codec": "vp9",
        "preset": "ultrafast",
        "destination": "volume://examples/clip.webm",
    },
    {"action": "probe", "video": "volume://examples/clip.webm"},
    {"action": "thumbnail", "video": "volume://examples/clip.webm", "format": "png", "width": 32},
    {"action": "extract_audio", "video": "volume://examples/clip.webm", "format": "mp3"},
    {"action": "trim", "video_base64": EXAMPLE_CLIP, "start_s": 0, "end_s": 0.5},
)
