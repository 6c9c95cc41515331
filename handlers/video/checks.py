"""The limits a video job meets once its input is probed: pure, from typed options and MediaInfo.

The worker's limits come from handlers.video.settings (RUNPOD_SLIM_VIDEO_MAX_DURATION_S,
_MAX_PIXELS); each refusal names the limit's variable, so the fix is clear to whoever runs it.
"""

from __future__ import annotations

from ..errors import JobError
from .media import MediaInfo
from .options import ExtractAudio, Frames, Probe, Thumbnail, Trim, VideoJob
from .settings import MAX_DURATION_S, MAX_PIXELS


def check_input(job: VideoJob, info: MediaInfo, limit_s: int) -> None:
    """Refuse an input with no media streams, no duration, longer than `limit_s`, or shorter
    than a trim asks for."""
    where = job.source.field
    if not any(s.type in ("video", "audio") for s in info.streams):
        raise JobError(f"{where} has no video or audio stream")
    if info.duration_s is None:
        raise JobError(f"{where} has no duration FFmpeg can read; it may be truncated")
    if info.duration_s > limit_s:
        raise JobError(
            f"{where} is {info.duration_s:g} s long; the limit is {limit_s} s ({MAX_DURATION_S})"
        )
    if isinstance(job, Trim) and job.start_s >= info.duration_s:
        raise JobError(
            f"input.start_s={job.start_s:g} is past the end of the video ({info.duration_s:g} s)"
        )
    if isinstance(job, Trim) and job.end_s > info.duration_s + 0.5:
        raise JobError(
            f"input.end_s={job.end_s:g} is past the end of the video ({info.duration_s:g} s)"
        )


def output_pixels(job: VideoJob, info: MediaInfo) -> float | None:
    """Pixels in one frame the job would make, or None when it decodes no picture.

    The size is what the scale filter will make: both sides given, or one side and the
    source's aspect ratio, or the source's own size when nothing is asked.
    """
    video = info.first("video")
    if video is None or not video.width or not video.height:
        return None
    if isinstance(job, Probe | ExtractAudio) or (isinstance(job, Trim) and not job.reencode):
        return None  # a stream copy decodes nothing
    width: int | None
    height: int | None
    if isinstance(job, Thumbnail | Frames):
        width, height = job.width, None  # pictures keep the source's aspect
    else:
        width, height = job.encode.width, job.encode.height
    if width and height:
        return float(width * height)
    if width:
        return width * width * video.height / video.width
    if height:
        return height * height * video.width / video.height
    return float(video.width * video.height)


def check_pixels(job: VideoJob, info: MediaInfo, limit: int) -> None:
    """Refuse an output frame over `limit` pixels (RUNPOD_SLIM_VIDEO_MAX_PIXELS)."""
    pixels = output_pixels(job, info)
    if pixels is not None and pixels > limit:
        raise JobError(
            f"the output would be {int(pixels):,} pixels a frame; the limit is {limit:,} "
            f"({MAX_PIXELS}): ask for a smaller input.width or input.height"
        )
