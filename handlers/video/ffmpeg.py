"""The ffmpeg runner: which encoders this worker has, and one encode run under the job's limits.

imageio-ffmpeg's static binary runs every encode (handlers/media.py says why, and runs the
process: never through a shell, killed when the job fails or its time runs out). NVENC is
tried once, at setup, with a one-frame encode per codec; only the codecs that passed are
ever used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import JobError
from .media import encoder_works, find_ffmpeg, run_ffmpeg
from .options import VIDEO_CODECS
from .plan import CPU_ENCODERS, NVENC_ENCODERS
from .settings import MAX_OUTPUT_MB


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

    def describe(self) -> str:
        """NVENC's state and the encoders jobs will get, for the start log."""
        ok = self.nvenc
        cpu = ", ".join(CPU_ENCODERS[c] for c in VIDEO_CODECS if c not in ok)
        gpu = ", ".join(NVENC_ENCODERS[c] for c in VIDEO_CODECS if c in ok)
        state = (
            f"works ({gpu})" if ok else f"unavailable ({'; '.join(self.nvenc_problems.values())})"
        )
        return f"NVENC {state}; encoders: {', '.join(x for x in (gpu, cpu) if x)}"


def find_encoders() -> Encoders:
    """The env's ffmpeg, and a one-frame test encode with each NVENC encoder (once a worker)."""
    ffmpeg = find_ffmpeg()
    ok, problems = set(), {}
    for codec, encoder in NVENC_ENCODERS.items():
        problem = encoder_works(ffmpeg, encoder)
        if problem is None:
            ok.add(codec)
        else:
            problems[codec] = problem if problem.startswith(encoder) else f"{encoder}: {problem}"
    return Encoders(ffmpeg, frozenset(ok), problems)


async def make_file(
    ffmpeg: str,
    args: Sequence[str],
    out: Path,
    *,
    max_bytes: int,
    label: str,
    duration_s: float | None,
    progress: Callable[[str], None] | None,
) -> None:
    """Run ffmpeg with `args` writing `out`, stopped at `max_bytes`; a JobError if it got there.

    ffmpeg stops writing at -fs and exits 0: a file that reached the limit is cut short, and
    is refused here rather than delivered as if complete.
    """
    await run_ffmpeg(
        ffmpeg,
        [*args, "-fs", str(max_bytes), f"file:{out}"],
        label=label,
        duration_s=duration_s,
        progress=progress,
    )
    if out.is_file() and out.stat().st_size >= max_bytes:
        raise JobError(
            f"the output reached {max_bytes / 1e6:.0f} MB, the limit "
            f"({MAX_OUTPUT_MB}); ask for a lower bitrate, size or a shorter part"
        )
