"""A whisperx job's output: segments as JSON, SRT and WebVTT subtitles, and their timestamps.

Pure functions: the unit tests run them without the audio env.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def timestamp(seconds: float, separator: str = ",") -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cue_text(segment: Mapping[str, Any]) -> str:
    text = " ".join(str(segment.get("text", "")).split())
    speaker = segment.get("speaker")
    return f"[{speaker}] {text}" if speaker else text


def _cues(segments: Sequence[Mapping[str, Any]]) -> list[tuple[float, float, str]]:
    cues = []
    for segment in segments:
        text = _cue_text(segment)
        if text:
            start = float(segment["start"])
            cues.append((start, max(start, float(segment["end"])), text))
    return cues


def to_srt(segments: Sequence[Mapping[str, Any]]) -> str:
    """SubRip subtitles: one numbered cue per segment with text."""
    blocks = [
        f"{i}\n{timestamp(start)} --> {timestamp(end)}\n{text}\n"
        for i, (start, end, text) in enumerate(_cues(segments), 1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Mapping[str, Any]]) -> str:
    """WebVTT subtitles: one cue per segment with text."""
    blocks = [
        f"{timestamp(start, '.')} --> {timestamp(end, '.')}\n{text}\n"
        for start, end, text in _cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def clean_segment(segment: Mapping[str, Any]) -> dict[str, Any]:
    """A segment as JSON: start, end, text, and words/speaker when there are any."""
    out: dict[str, Any] = {
        "start": _seconds(segment.get("start")),
        "end": _seconds(segment.get("end")),
        "text": str(segment.get("text", "")).strip(),
    }
    if segment.get("speaker") is not None:
        out["speaker"] = str(segment["speaker"])
    if "words" in segment:
        words = []
        for word in segment["words"]:
            item: dict[str, Any] = {"word": str(word.get("word", ""))}
            for name in ("start", "end", "score"):
                value = _seconds(word.get(name))
                if value is not None:  # words alignment could not place have no timing
                    item[name] = value
            if word.get("speaker") is not None:
                item["speaker"] = str(word["speaker"])
            words.append(item)
        out["words"] = words
    return out


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else round(number, 3)  # NaN: no timing
