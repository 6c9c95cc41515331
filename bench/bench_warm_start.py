"""Warm start: what a cache-hit `bootstrap.ensure()` adds to Python's own start-up.

    python3 bench/bench_warm_start.py [--runs 30] [--store in-place|packed]

Installs the storage env once (cold, not timed), compiles the bootstrap's bytecode as the
image build does, then times, alternating, `python3 -c pass`
(the baseline) and a process that imports the bootstrap, loads settings and runs ensure() on
the warm cache, activation included. Reports medians and the difference. Target: <= 50 ms.
With `--store packed`, the warm start is a container's restart: its hydrated copy is found
and checked against the manifest (on local disk here; on the volume that read is one more
round trip or three).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _common import REPO, report, timed

ENSURE = (
    "import os, bootstrap; "
    "bootstrap.ensure(bootstrap.load_settings(os.environ), log=lambda line: None)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--store", choices=("in-place", "packed"), default="in-place")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        env = {
            **os.environ,
            "HANDLER_TYPE": "storage",
            "RUNPOD_SLIM_CACHE": str(Path(tmp) / "cache"),
            "RUNPOD_SLIM_VOLUME": str(Path(tmp) / "no-volume"),
            "PYTHONPATH": str(REPO),
            "RUNPOD_SLIM_ENV_STORE": args.store,
            "RUNPOD_SLIM_LOCAL_DIR": str(Path(tmp) / "local"),
        }
        cold = timed([sys.executable, "-m", "bootstrap", "install"], env)
        # As in the image: the bootstrap's bytecode is compiled ahead (the Dockerfile runs
        # compileall), and Python may use it.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        timed([sys.executable, "-m", "compileall", "-q", str(REPO / "bootstrap")], env)
        baseline, warm = [], []
        for _ in range(args.runs):
            baseline.append(timed([sys.executable, "-c", "pass"], env))
            warm.append(timed([sys.executable, "-c", ENSURE], env))
    base_ms = statistics.median(baseline) * 1000
    warm_ms = statistics.median(warm) * 1000
    report(
        f"warm_start_{args.store}",
        {
            "command": f"python3 bench/bench_warm_start.py --runs {args.runs} --store {args.store}",
            "runs": args.runs,
            "cold_install_s": round(cold, 2),
            "python_startup_median_ms": round(base_ms, 1),
            "warm_ensure_process_median_ms": round(warm_ms, 1),
            "ensure_overhead_ms": round(warm_ms - base_ms, 1),
            "target_overhead_ms": 50,
            "ratio_to_python_startup": round(warm_ms / base_ms, 2),
        },
    )


if __name__ == "__main__":
    main()
