"""What a video job may ask for: the allow-lists, and the check that turns a job into a typed value.

Every option is checked against its choices or range here (handlers.validation), then becomes
one frozen dataclass per action, so the planner and the handler read typed fields, never the
raw input. No job input reaches ffmpeg as text: the command line is built from these values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeAlias

from ..errors import JobError
from ..validation import Field, validate

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
CHANNELS = ("mono", "stereo")
MAX_BASE64_CHARS = 14_000_000  # ~10 MB decoded: RunPod's /run payload limit


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
        "channels": Field(str, choices=CHANNELS),
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
class Source:
    """Where the job's video comes from: a URL (`input.video`) or bytes (`input.video_base64`)."""

    url: str | None = None
    data: str | None = None

    @property
    def field(self) -> str:
        """The input field the video came in, as errors name it."""
        return "input.video_base64" if self.data is not None else "input.video"


@dataclass(frozen=True)
class EncodeOptions:
    """How to encode video and audio (a transcode, or a trim with reencode: true)."""

    video_codec: str | None = None
    crf: int | None = None
    bitrate_kbps: int | None = None
    preset: str = "medium"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_codec: str | None = None
    audio_bitrate_kbps: int | None = None
    encoder: str = "auto"

    def asked(self) -> tuple[str, ...]:
        """The options the job set that only an encode can honour (preset and encoder have
        defaults, so they never count), in the order the fields are declared."""
        return tuple(
            f.name
            for f in fields(self)
            if f.name not in ("preset", "encoder") and getattr(self, f.name) is not None
        )


@dataclass(frozen=True)
class Probe:
    """Describe the container and its streams."""

    action: ClassVar[str] = "probe"
    source: Source


@dataclass(frozen=True)
class Transcode:
    """Re-encode the whole video into `container`."""

    action: ClassVar[str] = "transcode"
    source: Source
    destination: str | None = None
    container: str = "mp4"
    encode: EncodeOptions = EncodeOptions()


@dataclass(frozen=True)
class ExtractAudio:
    """The first audio stream, as a file of its own."""

    action: ClassVar[str] = "extract_audio"
    source: Source
    destination: str | None = None
    format: str = "wav"
    sample_rate: int | None = None
    channels: str | None = None
    audio_bitrate_kbps: int | None = None


@dataclass(frozen=True)
class Thumbnail:
    """One picture at `time_s`, or `count` evenly spaced (one at the middle by default)."""

    action: ClassVar[str] = "thumbnail"
    source: Source
    destination: str | None = None
    format: str = "jpg"
    width: int | None = None
    time_s: float | None = None
    count: int | None = None


@dataclass(frozen=True)
class Frames:
    """One picture every `interval_s` seconds, packed as a zip."""

    action: ClassVar[str] = "frames"
    source: Source
    destination: str | None = None
    format: str = "jpg"
    width: int | None = None
    interval_s: float = 1.0


@dataclass(frozen=True)
class Trim:
    """`start_s` to `end_s`: a stream copy, or re-encoded with `reencode`."""

    action: ClassVar[str] = "trim"
    source: Source
    end_s: float
    start_s: float = 0.0
    destination: str | None = None
    reencode: bool = False
    container: str | None = None  # None: the input's own container, where it is one of ours
    encode: EncodeOptions = EncodeOptions()


VideoJob: TypeAlias = Probe | Transcode | ExtractAudio | Thumbnail | Frames | Trim


def parse(job_input: Mapping[str, Any]) -> VideoJob:
    """The job's input checked against its action's fields, as a typed value.

    Refuses, with one sentence naming the field, the value and what is allowed, anything
    unknown, out of range, not among the choices, or inconsistent on its face (a trim that
    ends before it starts).
    """
    action = job_input.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        validate({"action": action}, {"action": Field(str, required=True, choices=ACTIONS)})
        raise JobError(f"input.action must be one of {', '.join(ACTIONS)}")  # not reached
    checked = validate({k: v for k, v in job_input.items() if k != "action"}, FIELDS[action])
    return _BUILDERS[action](checked)


def _source(checked: Mapping[str, Any]) -> Source:
    return Source(url=checked["video"], data=checked["video_base64"])


def _encode(checked: Mapping[str, Any]) -> EncodeOptions:
    return EncodeOptions(**{f.name: checked[f.name] for f in fields(EncodeOptions)})


def _probe(checked: Mapping[str, Any]) -> Probe:
    return Probe(_source(checked))


def _transcode(checked: Mapping[str, Any]) -> Transcode:
    return Transcode(
        _source(checked), checked["destination"], checked["container"], _encode(checked)
    )


def _extract_audio(checked: Mapping[str, Any]) -> ExtractAudio:
    return ExtractAudio(
        _source(checked),
        checked["destination"],
        checked["format"],
        checked["sample_rate"],
        checked["channels"],
        checked["audio_bitrate_kbps"],
    )


def _thumbnail(checked: Mapping[str, Any]) -> Thumbnail:
    return Thumbnail(
        _source(checked),
        checked["destination"],
        checked["format"],
        checked["width"],
        checked["time_s"],
        checked["count"],
    )


def _frames(checked: Mapping[str, Any]) -> Frames:
    return Frames(
        _source(checked),
        checked["destination"],
        checked["format"],
        checked["width"],
        checked["interval_s"],
    )


def _trim(checked: Mapping[str, Any]) -> Trim:
    start, end = checked["start_s"], checked["end_s"]
    if end <= start:
        raise JobError(f"input.end_s={end:g} must be after input.start_s={start:g}")
    return Trim(
        _source(checked),
        end_s=end,
        start_s=start,
        destination=checked["destination"],
        reencode=checked["reencode"],
        container=checked["container"],
        encode=_encode(checked),
    )


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], VideoJob]] = {
    "probe": _probe,
    "transcode": _transcode,
    "extract_audio": _extract_audio,
    "thumbnail": _thumbnail,
    "frames": _frames,
    "trim": _trim,
}
