"""scripts/run_examples.py run as the README shows it, on a machine with no network volume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_storage_examples_pass_without_a_volume_or_settings(tmp_path: Path) -> None:
    # A fresh machine: no RUNPOD_SLIM_* settings and no bucket; TMPDIR keeps the stand-in
    # volume (and the cache on it) inside this test's temp dir.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_SLIM_", "BUCKET_"))}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "scripts/run_examples.py", "storage"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stdout.strip().endswith("4 passed, 0 failed")
    volume = tmp_path / "runpod-slim-volume"
    assert f"no network volume: using {volume} as the volume" in proc.stderr
    assert (volume / "examples" / "hello.txt").is_file()
