"""The video handler's lifecycle: setup() finds ffmpeg and tests NVENC once; run() does a job.

A job is checked into a typed value (options.parse), its video fetched and probed, its limits
checked (checks), its ffmpeg arguments planned (plan), ffmpeg run (ffmpeg) and the result
delivered: every step but the run and the delivery is pure, and lives beside this module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..base import Handler, JobContext
from ..config import HandlerConfig
from ..errors import JobError
from . import settings as video_settings
from .checks import check_input, check_pixels
from .examples import EXAMPLES
from .ffmpeg import Encoders, find_encoders, make_file
from .media import MediaInfo, input_args, probe, run_ffmpeg
from .options import ExtractAudio, Frames, Probe, Thumbnail, Transcode, Trim, VideoJob, parse
from .plan import (
    IMAGE_ENCODER,
    EncodePlan,
    frames_args,
    picture_args,
    plan_audio,
    plan_encode,
    plan_trim,
    thumbnail_times,
)
from .settings import VideoSettings

LOG = logging.getLogger("runpod-slim")


class VideoHandler(Handler):
    """Media jobs with FFmpeg; setup() finds the binary and tests NVENC once."""

    name: ClassVar[str] = "video"
    profile: ClassVar[str] = "video"
    examples: ClassVar[tuple[Mapping[str, Any], ...]] = EXAMPLES

    def __init__(self, config: HandlerConfig, settings: VideoSettings | None = None) -> None:
        super().__init__(config)
        self.settings = settings if settings is not None else video_settings.load(os.environ)
        self.encoders: Encoders | None = None

    def setup(self) -> None:
        """Find the env's ffmpeg and test NVENC once; the start log says which encoders run."""
        import av

        self.encoders = find_encoders()
        LOG.info(
            "video: ffmpeg %s, PyAV %s; %s",
            self.encoders.ffmpeg,
            av.__version__,
            self.encoders.describe(),
        )

    async def run(self, job: JobContext) -> dict[str, Any]:
        """One job: its input checked into a typed request, then done within its time limit."""
        request = parse(job.input)
        encoders = self.encoders
        if encoders is None:
            raise JobError("the video handler was not set up (setup() did not run)")
        # The whole job runs under its time limit: on expiry the awaits are cancelled and
        # run_ffmpeg kills ffmpeg (a download checks the deadline at every read itself).
        result = await job.within_time(self._run(job, request, encoders))
        return {"action": request.action, **result}

    async def _run(self, job: JobContext, request: VideoJob, enc: Encoders) -> dict[str, Any]:
        if not isinstance(request, Probe):  # a destination nothing can be put at: refused now
            job.check_destination(request.destination)
        source = request.source
        path, _ = await asyncio.to_thread(
            job.fetch, "video", source.url, source.data, job.workdir / "source"
        )
        info = await asyncio.to_thread(probe, path, source.field)
        check_input(request, info, self.settings.max_duration_s)
        if isinstance(request, Probe):
            return info.as_dict()
        check_pixels(request, info, self.settings.max_pixels)
        if isinstance(request, Transcode):
            plan = plan_encode(request, info, enc.nvenc, enc.nvenc_problems)
            return await self._encode(job, request, path, plan, None, info.duration_s)
        if isinstance(request, Trim):
            plan = plan_trim(request, info, enc.nvenc, enc.nvenc_problems)
            length = request.end_s - request.start_s
            return await self._encode(job, request, path, plan, request.start_s, length)
        if isinstance(request, ExtractAudio):
            return await self._extract_audio(job, request, path, info, enc)
        if isinstance(request, Thumbnail):
            return await self._thumbnail(job, request, path, info, enc)
        return await self._frames(job, request, path, info, enc)

    async def _encode(
        self,
        job: JobContext,
        request: Transcode | Trim,
        path: Path,
        plan: EncodePlan,
        start: float | None,
        duration: float | None,
    ) -> dict[str, Any]:
        assert self.encoders is not None
        out = job.workdir / f"output.{plan.container}"
        LOG.info("job %s: %s with %s (%s)", job.id, request.action, plan.encoder, plan.container)
        await make_file(
            self.encoders.ffmpeg,
            [*input_args(path, start), *plan.args],
            out,
            max_bytes=self.settings.max_output_bytes,
            label=request.action,
            duration_s=duration,
            progress=job.progress,
        )
        made = await asyncio.to_thread(probe, out, "the output")
        delivered = await asyncio.to_thread(job.deliver, out, request.destination)
        return {
            "encoder": plan.encoder,
            "audio_encoder": plan.audio_encoder,
            "container": plan.container,
            "duration_s": made.duration_s,
            "streams": [s["codec"] for s in made.as_dict()["streams"]],
            **delivered,
        }

    async def _extract_audio(
        self, job: JobContext, request: ExtractAudio, path: Path, info: MediaInfo, enc: Encoders
    ) -> dict[str, Any]:
        plan = plan_audio(request, info)
        out = job.workdir / f"audio.{plan.extension}"
        await make_file(
            enc.ffmpeg,
            [*input_args(path), *plan.args, "-f", plan.muxer],
            out,
            max_bytes=self.settings.max_output_bytes,
            label="extract audio",
            duration_s=info.duration_s,
            progress=job.progress,
        )
        made = await asyncio.to_thread(probe, out, "the output")
        stream = made.first("audio")
        delivered = await asyncio.to_thread(job.deliver, out, request.destination)
        return {
            "encoder": plan.encoder,
            "format": request.format,
            "duration_s": made.duration_s,
            "sample_rate": stream.sample_rate if stream else None,
            "channels": stream.channels if stream else None,
            **delivered,
        }

    async def _thumbnail(
        self, job: JobContext, request: Thumbnail, path: Path, info: MediaInfo, enc: Encoders
    ) -> dict[str, Any]:
        times = thumbnail_times(request, info)
        fmt = request.format
        pictures = []
        for number, at in enumerate(times, 1):
            out = job.workdir / f"thumbnail-{number:03d}.{fmt}"
            await run_ffmpeg(
                enc.ffmpeg,
                [
                    *input_args(path, at),
                    *picture_args(request),
                    *("-frames:v", "1", "-update", "1", "-f", "image2"),
                    f"file:{out}",
                ],
                label="make a thumbnail",
            )
            if not out.is_file():
                raise JobError(f"no frame was found at {at:g} s in {request.source.field}")
            pictures.append((at, out))
        encoder = IMAGE_ENCODER[fmt]
        if len(pictures) == 1:
            delivered = await asyncio.to_thread(job.deliver, pictures[0][1], request.destination)
            return {"encoder": encoder, "format": fmt, "time_s": times[0], **delivered}
        results = []
        for at, out in pictures:
            where = request.destination
            # A folder destination: each picture goes in it under its own name.
            where = f"{where.rstrip('/')}/{out.name}" if where else None
            delivered = await asyncio.to_thread(job.deliver, out, where)
            results.append({"time_s": at, **delivered})
        return {"encoder": encoder, "format": fmt, "thumbnails": results}

    async def _frames(
        self, job: JobContext, request: Frames, path: Path, info: MediaInfo, enc: Encoders
    ) -> dict[str, Any]:
        out_args = frames_args(request, info)
        fmt = request.format
        folder = job.workdir / "frames"
        folder.mkdir()
        await run_ffmpeg(
            enc.ffmpeg,
            [*input_args(path), *out_args, "-f", "image2", f"file:{folder}/frame-%05d.{fmt}"],
            label="extract frames",
            duration_s=info.duration_s,
            progress=job.progress,
        )
        names = sorted(p.name for p in folder.iterdir())
        archive = job.workdir / "frames.zip"
        await asyncio.to_thread(_pack, archive, folder, names)
        delivered = await asyncio.to_thread(job.deliver, archive, request.destination)
        return {
            "encoder": IMAGE_ENCODER[fmt],
            "format": fmt,
            "count": len(names),
            "interval_s": request.interval_s,
            "files": names,
            **delivered,
        }


def _pack(archive: Path, folder: Path, names: list[str]) -> None:
    # Pictures are compressed already: stored, not deflated again.
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
        for name in names:
            zipped.write(folder / name, name)
