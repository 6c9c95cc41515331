"""A ready env: activation in-process (first on sys.path, .pth files honoured) and in children."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrap.env import ReadyEnv
from bootstrap.errors import BootstrapError

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def make_env(tmp_path: Path, python: str = PYTHON) -> ReadyEnv:
    site = tmp_path / "env" / "site"
    (site / "extra").mkdir(parents=True)
    (site / "slim_probe.py").write_text("WHERE = 'env'\n")
    (site / "extra" / "slim_extra.py").write_text("")
    (site / "extra.pth").write_text("extra\n")  # as some wheels ship
    return ReadyEnv("k", tmp_path / "env", {"python": python}, cold=False)


def test_activate_puts_the_env_first_and_reads_pth_files(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    saved = list(sys.path)
    try:
        env.activate()
        env.activate()  # idempotent
        assert sys.path[0] == str(env.site_dir)
        assert sys.path.count(str(env.site_dir)) == 1
        assert str(env.site_dir / "extra") in sys.path
    finally:
        sys.path[:] = saved


def test_activate_refuses_another_python(tmp_path: Path) -> None:
    with pytest.raises(BootstrapError, match=r"was built for Python 2\.7, this is Python 3\."):
        make_env(tmp_path, python="2.7").activate()


def test_subprocess_environ_lets_a_child_import_from_the_env(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    child = env.subprocess_environ({"PATH": "/usr/bin:/bin", "PYTHONPATH": "/other"})
    assert child["PYTHONPATH"] == f"{env.site_dir}:/other"
    assert child["PATH"].startswith(f"{env.site_dir / 'bin'}:")
    out = subprocess.run(
        [sys.executable, "-c", "import slim_probe; print(slim_probe.WHERE)"],
        env=child,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "env"


def test_isolate_takes_the_machines_site_packages_off_sys_path(tmp_path: Path) -> None:
    import ast
    import site

    code = (
        "import site, sys; from pathlib import Path; from bootstrap.env import ReadyEnv;"
        "ReadyEnv('k', Path('.'), {}, cold=False).isolate();"
        "print(repr(sys.path))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    path = ast.literal_eval(run.stdout)
    assert str(tmp_path) in path  # asked for: stays
    assert not set(path) & {*site.getsitepackages(), site.getusersitepackages()}
