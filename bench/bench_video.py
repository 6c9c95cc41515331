"""Video handler overhead: a 1080p transcode through the handler vs the same ffmpeg alone.

    python3 bench/bench_video.py [--seconds 30] [--preset veryfast] [--rounds 2] [--cache-dir DIR]

Installs (or finds, with --cache-dir) the video env through the bootstrap and activates it,
then makes a 1080p 30 fps h264+aac source of `seconds` (testsrc2 and a sine) on a volume
directory. Then alternates, `rounds` times:
  direct   imageio-ffmpeg's ffmpeg with exactly the arguments the handler builds for the job
           (the handler's own planning code), writing to a local file
  handler  one transcode job (volume:// in, volume:// out) through handler.py's adapter, as
           the SDK runs it: validation, PyAV probe of the input, ffmpeg with -progress parsed,
           PyAV probe of the output, delivery to the volume
Both encode to h264 with libx264 at `preset` (veryfast by default, so four encodes of 30 s of
1080p fit in about two minutes on two cores) and crf 23, audio aac 128k; the two outputs have
the same size, which shows the arguments are the same. Reports the best of rounds
and the handler's overhead (target: at most 5%), in wall seconds and in CPU seconds (ffmpeg's,
and the handler's own Python: on a busy machine wall seconds swing with the neighbours, CPU
seconds hardly). NVENC vs libx264 needs a GPU with NVENC;
without one (setup's test encode fails) it is reported as not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import REPO, report

sys.path.insert(0, str(REPO))
from bootstrap import ensure, load_settings
from handler import adapt, build_handler


def cpu_seconds(who: int) -> float:
    """User plus system CPU seconds of this process (RUSAGE_SELF: the handler's own Python,
    its threads included) or of its finished children (RUSAGE_CHILDREN: ffmpeg)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def alternate(
    runs: dict[str, Callable[[], None]], rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Per run and round: wall seconds, ffmpeg's CPU seconds and this process's own CPU
    seconds, alternating which run goes first, so neither always gets the warmer machine.

    CPU seconds hardly move with what else the machine runs, where wall seconds on a busy
    machine do: the handler's own CPU is its overhead without ffmpeg's noise in it.
    """
    order = list(runs.items())
    walls: dict[str, list[float]] = {name: [] for name in runs}
    ffmpeg_cpu: dict[str, list[float]] = {name: [] for name in runs}
    own_cpu: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(rounds):
        for name, run in order if round_ % 2 == 0 else order[::-1]:
            children = cpu_seconds(resource.RUSAGE_CHILDREN)
            own = cpu_seconds(resource.RUSAGE_SELF)
            began = time.perf_counter()
            run()
            walls[name].append(time.perf_counter() - began)
            ffmpeg_cpu[name].append(cpu_seconds(resource.RUSAGE_CHILDREN) - children)
            own_cpu[name].append(cpu_seconds(resource.RUSAGE_SELF) - own)
    return walls, ffmpeg_cpu, own_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, help="an existing cache: no cold install")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        volume = Path(tmp) / "volume"
        volume.mkdir()
        environ = {
            **os.environ,
            "HANDLER_TYPE": "video",
            "RUNPOD_SLIM_CACHE": str(args.cache_dir or Path(tmp) / "cache"),
            "RUNPOD_SLIM_VOLUME": str(volume),
        }
        ensure(load_settings(environ), environ=environ)  # the env is first on sys.path now
        from handlers.video.media import input_args, probe
        from handlers.video.options import Transcode, parse
        from handlers.video.plan import plan_encode

        handler: Any = build_handler(environ)
        if handler.setup_error:
            raise SystemExit(handler.setup_error)
        ffmpeg = handler.encoders.ffmpeg
        source = volume / "source.mp4"
        began = time.perf_counter()
        _make_source(ffmpeg, source, args.seconds)
        made_s = time.perf_counter() - began
        job_input = {
            "action": "transcode",
            "video": "volume://source.mp4",
            "container": "mp4",
            "video_codec": "h264",
            "preset": args.preset,
            "crf": 23,
            "encoder": "cpu",
            "destination": "volume://out/handler.mp4",
        }
        run_job = adapt(handler, lambda job, message: None)
        # The direct command: the same binary, the same arguments the handler plans for the
        # job (the job's own input, checked into its typed value as the handler does).
        request = parse(job_input)
        assert isinstance(request, Transcode)
        plan = plan_encode(request, probe(source, "source"), frozenset(), {})
        direct_out = Path(tmp) / "direct.mp4"
        direct = [
            ffmpeg,
            *("-nostdin", "-hide_banner", "-y", "-loglevel", "error"),
            *input_args(source),
            *plan.args,
            f"file:{direct_out}",
        ]

        def run_direct() -> None:
            subprocess.run(direct, check=True)

        def run_handler() -> None:
            result: dict[str, Any] = asyncio.run(run_job({"id": "bench", "input": job_input}))
            if "error" in result:
                raise SystemExit(result["error"])

        timings, ffmpeg_cpu, own_cpu = alternate(
            {"direct": run_direct, "handler": run_handler}, args.rounds
        )
        nvenc: str | dict[str, float] = (
            f"not measured: NVENC is not available here ({handler.encoders.nvenc_problem})"
        )
        if "h264" in handler.encoders.nvenc:
            gpu = {**job_input, "encoder": "nvenc", "destination": "volume://out/nvenc.mp4"}
            began = time.perf_counter()
            result = asyncio.run(run_job({"id": "bench-nvenc", "input": gpu}))
            if "error" in result:
                raise SystemExit(result["error"])
            nvenc = {"h264_nvenc_s": round(time.perf_counter() - began, 2)}
        # A handler job's whole CPU: its ffmpeg's and its own.
        handler_cpu = [
            a + b for a, b in zip(ffmpeg_cpu["handler"], own_cpu["handler"], strict=True)
        ]
        out = probe(volume / "out" / "handler.mp4", "output")
        best = {name: min(values) for name, values in timings.items()}
        overhead = (best["handler"] - best["direct"]) / best["direct"] * 100
        report(
            "video_transcode",
            {
                "source": f"1920x1080 30 fps h264+aac, {args.seconds} s (made in {made_s:.1f} s)",
                "encode": f"h264 libx264 -preset {args.preset} -crf 23, aac 128k, mp4",
                "ffmpeg": ffmpeg,
                "direct_argv": direct[1:],
                "rounds": args.rounds,
                "seconds": {k: [round(v, 2) for v in vals] for k, vals in timings.items()},
                "best_s": {k: round(v, 2) for k, v in best.items()},
                "handler_overhead_pct": round(overhead, 2),
                "median_s": {k: round(statistics.median(v), 2) for k, v in timings.items()},
                "handler_overhead_pct_median": round(
                    (
                        statistics.median(timings["handler"]) / statistics.median(timings["direct"])
                        - 1
                    )
                    * 100,
                    2,
                ),
                "cpu_s": {
                    "ffmpeg": {k: [round(v, 2) for v in vals] for k, vals in ffmpeg_cpu.items()},
                    "own": {k: [round(v, 3) for v in vals] for k, vals in own_cpu.items()},
                },
                # The handler's own CPU (validation, probes, progress, delivery) per job, and
                # as a share of the CPU the encode itself takes.
                "handler_own_cpu_s_median": round(statistics.median(own_cpu["handler"]), 3),
                "handler_overhead_cpu_pct_median": round(
                    (statistics.median(handler_cpu) / statistics.median(ffmpeg_cpu["direct"]) - 1)
                    * 100,
                    2,
                ),
                "handler_own_cpu_pct_of_encode": round(
                    statistics.median(own_cpu["handler"])
                    / statistics.median(ffmpeg_cpu["direct"])
                    * 100,
                    2,
                ),
                "target_overhead_pct": 5,
                "output": {
                    "duration_s": out.duration_s,
                    "bytes": out.size_bytes,
                    "direct_bytes": direct_out.stat().st_size,
                    "encoder": "libx264",
                },
                "nvenc_vs_libx264": nvenc,
            },
        )


def _make_source(ffmpeg: str, out: Path, seconds: int) -> None:
    subprocess.run(
        [
            ffmpeg,
            *("-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={seconds}"),
            *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p"),
            *("-c:a", "aac", "-shortest", str(out)),
        ],
        check=True,
    )


if __name__ == "__main__":
    main()
