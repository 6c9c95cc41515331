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
and ranges in options.py), and the command line is built from checked values only (plan.py).

The package: options.py (allow-lists; a job checked into a typed value per action),
plan.py (pure: ffmpeg arguments from typed options and the probed input), checks.py (pure:
the worker's limits on input and output), ffmpeg.py (the encoders this worker has; one run
under the output size limit), examples.py (example jobs, a clip inline), settings.py (its own
RUNPOD_SLIM_VIDEO_* settings), handler.py (VideoHandler, the lifecycle).
"""

from __future__ import annotations

from .examples import EXAMPLE_CLIP
from .handler import VideoHandler
from .options import FIELDS

__all__ = ["EXAMPLE_CLIP", "FIELDS", "VideoHandler"]
