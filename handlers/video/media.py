"""FFmpeg for the video handler: where the binary is, probing with PyAV, and running ffmpeg.

Which FFmpeg does what (both come from the video env's wheels, never from apt):
- Every encode, cut and image runs through imageio-ffmpeg's static `ffmpeg` binary (FFmpeg
  9). It has every encoder the handler offers: libx264, libx265, libsvtav1 (also libaom-av1
  and librav1e), libvpx-vp9, aac, libopus, libmp3lame, pcm_s16le, mjpeg, png, libwebp, and
  h264/hevc/av1_nvenc. One binary for all encodes means one set of options to know, a
  process that can be killed when a job fails, and `-progress` for free.
- Probing runs in-process through PyAV (FFmpeg 8 libraries bundled in its wheel), because
  imageio-ffmpeg ships no ffprobe.

Both open inputs under the same allow-lists: only the `file` protocol, and only the demuxers
in DEMUXERS, so a "video" that is really a playlist (HLS, concat) cannot make FFmpeg read
other files or reach the network.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import JobError, SetupError

LOG = logging.getLogger("runpod-slim")

# Demuxers an input may be read with (FFmpeg's names; "mov,mp4,..." is one demuxer's name).
DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "flv",
    "mpegts",
    "mpeg",
    "ogg",
    "asf",
    "ivf",
    "wav",
    "mp3",
    "aac",
    "flac",
)
_OPEN_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": ",".join(DEMUXERS)}
_BASE = ("-nostdin", "-hide_banner", "-y", "-loglevel", "error")
_STDERR_TAIL = 160


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a probed file."""

    index: int
    type: str  # video, audio, subtitle, data
    codec: str | None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    pix_fmt: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    bitrate: int | None = None


@dataclass(frozen=True)
class MediaInfo:
    """What probing a file found: its container, duration, size and streams."""

    container: str
    duration_s: float | None
    size_bytes: int
    bitrate: int | None
    streams: tuple[StreamInfo, ...] = field(default=())

    def first(self, kind: str) -> StreamInfo | None:
        return next((s for s in self.streams if s.type == kind), None)

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["streams"] = [
            {k: v for k, v in asdict(s).items() if v is not None} for s in self.streams
        ]
        return result


def find_ffmpeg() -> str:
    """The path of imageio-ffmpeg's static ffmpeg binary in the active env."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise SetupError(
            f"imageio-ffmpeg is not importable ({exc}); the video env is not active"
        ) from None
    try:
        path: str = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise SetupError(f"imageio-ffmpeg has no ffmpeg binary for this platform: {exc}") from None
    return path


def encoder_works(ffmpeg: str, encoder: str, timeout_s: float = 30) -> str | None:
    """None if a one-frame test encode with `encoder` succeeds, else why it failed."""
    argv = [
        ffmpeg,
        *_BASE,
        "-f",
        "lavfi",
        "-i",
        "color=black:size=256x256:rate=25",
        "-frames:v",
        "1",
        "-c:v",
        encoder,
        "-f",
        "null",
        "-",
    ]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # The first line names the cause ("Cannot load libcuda.so.1"); the rest is the fallout.
    return _strip_tag(lines[0]) if lines else f"exit status {proc.returncode}"


def probe(path: Path, field_name: str) -> MediaInfo:
    """Open `path` with PyAV and describe it; a file FFmpeg cannot read is refused."""
    import av

    size = path.stat().st_size
    try:
        container = av.open(str(path), options=dict(_OPEN_OPTIONS))
    except av.error.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise JobError(
            f"{field_name} is not a media file FFmpeg can read ({reason}); give a video in "
            f"one of these containers: mp4/mov, mkv/webm, avi, flv, mpegts, mpeg, ogg, asf"
        ) from None
    with container:
        streams = tuple(_stream_info(s) for s in container.streams)
        duration = container.duration / 1_000_000 if container.duration else None
        if duration is None:
            durations = [s.duration_s for s in streams if s.duration_s]
            duration = max(durations) if durations else None
        return MediaInfo(
            container=container.format.name,
            duration_s=round(duration, 3) if duration is not None else None,
            size_bytes=size,
            bitrate=container.bit_rate or None,
            streams=streams,
        )


def _stream_info(stream: Any) -> StreamInfo:
    context = stream.codec_context
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = round(float(stream.duration * stream.time_base), 3)
    common = {
        "index": stream.index,
        "type": stream.type,
        "codec": _codec_name(context),
        "duration_s": duration,
        "bitrate": (context.bit_rate or None) if context is not None else None,
    }
    if stream.type == "video":
        rate = stream.average_rate or stream.guessed_rate
        return StreamInfo(
            **common,
            width=context.width or None,
            height=context.height or None,
            fps=round(float(rate), 3) if rate else None,
            pix_fmt=context.pix_fmt,
        )
    if stream.type == "audio":
        return StreamInfo(
            **common, sample_rate=context.sample_rate or None, channels=context.channels or None
        )
    return StreamInfo(**common)


def _codec_name(context: Any) -> str | None:
    # The format's codec ("av1"), not the decoder PyAV picked for it ("libdav1d").
    if context is None:
        return None
    codec = context.codec
    name = getattr(codec, "canonical_name", None) or codec.name or context.name
    return str(name) if name else None


def input_args(path: Path, start_s: float | None = None) -> list[str]:
    """ffmpeg's arguments that open `path` under the allow-lists (seeking to start_s)."""
    seek = ["-ss", seconds(start_s)] if start_s else []
    return [
        *seek,
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        ",".join(DEMUXERS),
        "-i",
        f"file:{path}",
    ]


def seconds(value: float) -> str:
    return f"{value:.3f}"


async def run_ffmpeg(
    ffmpeg: str,
    args: Sequence[str],
    *,
    label: str,
    duration_s: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Run ffmpeg with `args` (never through a shell); report progress; kill it on failure.

    With `progress` and a known duration, `-progress pipe:1` is parsed and "<label> 42%" is
    reported at each 10% step. A non-zero exit raises JobError with the tail of its stderr.
    """
    report = progress is not None and bool(duration_s)
    argv = [ffmpeg, *_BASE, *(["-progress", "pipe:1", "-nostats"] if report else []), *args]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if report else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    errors = asyncio.ensure_future(process.stderr.read())  # read alongside: a full pipe stalls
    try:
        if report and process.stdout is not None and progress is not None and duration_s:
            await _follow(process.stdout, duration_s, label, progress)
        stderr = (await errors).decode(errors="replace")
        code = await process.wait()
    finally:
        if process.returncode is None:  # the job failed or was cancelled: ffmpeg goes too
            process.kill()
            await process.wait()
        errors.cancel()
    if code != 0:
        raise JobError(f"ffmpeg failed to {label} (exit status {code}): {cause(stderr)}")


async def _follow(
    stdout: asyncio.StreamReader, duration_s: float, label: str, progress: Callable[[str], None]
) -> None:
    step = 0
    async for raw in stdout:
        key, _, value = raw.decode(errors="replace").strip().partition("=")
        if key == "out_time_us" and value.lstrip("-").isdigit():
            percent = min(99, int(int(value) / 1e6 / duration_s * 100))
            if percent // 10 > step:
                step = percent // 10
                progress(f"{label} {percent}%")
        elif key == "progress" and value == "end":
            progress(f"{label} 100%")


# ffmpeg's lines that only report that something else failed.
_FALLOUT = ("Task finished with error", "Terminating thread", "Conversion failed", "Error while")


def cause(stderr: str) -> str:
    """ffmpeg's reason for failing as one short line: the first line that is not fallout.

    Paths are left to handler.py's redaction (job temp dirs), addresses ("@ 0x55...") go.
    """
    lines = [_strip_tag(line.strip()) for line in stderr.splitlines() if line.strip()]
    useful = [line for line in lines if not any(f in line for f in _FALLOUT)]
    line = (useful or lines or ["no reason given"])[0]
    return re.sub(r" @ 0x[0-9a-fA-F]+", "", line)[:_STDERR_TAIL]


def _strip_tag(line: str) -> str:
    # "[h264_nvenc @ 0x55ae...] Cannot load libcuda.so.1" -> "h264_nvenc: Cannot load ..."
    if line.startswith("[") and "] " in line:
        tag, _, rest = line[1:].partition("] ")
        return f"{tag.split(' @ ')[0]}: {rest}"
    return line
