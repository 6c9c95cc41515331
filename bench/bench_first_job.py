"""Process start to first job done, warm cache, and how much of it is `import runpod`.

    python3 bench/bench_first_job.py [--runs 5]

Installs the storage env once (not timed). Then, per run: the whole worker process
`python3 handler.py --test_input <copy job>` (bootstrap warm path, handler setup, the SDK,
one real job to the volume); the worker's own log says how long its `import runpod` took.
`python3 -c pass` runs beside it. Reports medians and the shares of the total.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, report, timed

JOB = {"input": {"action": "copy", "source_base64": "aGVsbG8K", "destination": "volume://h.txt"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-first-job-") as tmp:
        (Path(tmp) / "volume").mkdir()
        env = {
            **os.environ,
            "HANDLER_TYPE": "storage",
            "RUNPOD_SLIM_VOLUME": str(Path(tmp) / "volume"),
            "RUNPOD_SLIM_CACHE": str(Path(tmp) / "cache"),
        }
        install = [sys.executable, "-m", "bootstrap", "install", "--json"]
        cold = timed(install, env)
        worker = [sys.executable, "handler.py", "--test_input", json.dumps(JOB)]
        total, sdk, python = [], [], []
        for _ in range(args.runs):
            began = time.perf_counter()
            run = subprocess.run(
                worker, env=env, cwd=REPO, capture_output=True, text=True, check=True
            )
            total.append(time.perf_counter() - began)
            # The worker logs how long its own `import runpod` took, in the same process.
            match = re.search(r"sdk: import runpod \S+ \((\d+) ms\)", run.stdout + run.stderr)
            if not match or "completed successfully" not in run.stdout + run.stderr:
                raise SystemExit(f"unexpected worker output:\n{run.stderr[-3000:]}")
            sdk.append(int(match[1]) / 1000)
            python.append(timed([sys.executable, "-c", "pass"], env))
    median = {
        k: statistics.median(v)
        for k, v in (("total", total), ("import_runpod", sdk), ("python", python))
    }
    report(
        "first_job_warm",
        {
            "command": f"python3 bench/bench_first_job.py --runs {args.runs}",
            "cold_install_s": round(cold, 2),
            "median_s": {k: round(v, 3) for k, v in median.items()},
            "import_runpod_share": round(median["import_runpod"] / median["total"], 2),
            "python_startup_share": round(median["python"] / median["total"], 2),
        },
    )


if __name__ == "__main__":
    main()
