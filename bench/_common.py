"""Helpers shared by the benchmarks: timing a command, the machine's description, reporting."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )


def timed(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path = REPO) -> float:
    """Wall seconds of one run; fails loudly if the command fails."""
    return run_timed(argv, env, cwd)[0]


def run_timed(
    argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path = REPO
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall seconds of one run, and the run (its output, to read); fails loudly if it fails."""
    began = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        env=dict(env or os.environ),
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return took, proc


def report(name: str, data: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **data,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))
    return path
