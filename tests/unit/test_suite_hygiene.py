"""The test suite cleans up after itself: a passing test's temp dir is gone after the run.

It runs pytest, with this project's configuration, on two tiny tests in a temp root of its own
(PYTEST_DEBUG_TEMPROOT), and looks at what is left there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = """
def test_passes(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 100_000)

def test_fails(tmp_path):
    (tmp_path / "evidence").write_text("kept for debugging")
    assert False
"""


def test_only_failed_tests_leave_their_temp_dirs(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_sample.py").write_text(SAMPLE)
    root = tmp_path / "temproot"
    root.mkdir()
    for _ in range(2):  # two runs: only the last one's failure is kept
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-c",
                str(REPO / "pyproject.toml"),
                "-q",
                "-p",
                "no:cacheprovider",
                str(tmp_path / "tests"),
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTEST_DEBUG_TEMPROOT": str(root)},
            capture_output=True,
            check=False,
        )
    left = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    kept = [p for p in left if p.name != ".lock"]
    assert [p.parts[-2:] for p in kept] == [("test_fails0", "evidence")], left
    assert len({p.parts[1] for p in kept}) == 1  # from one run only
