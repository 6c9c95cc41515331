"""One deadline for an install: real uv and real pip against a stalled index, and pip isolated.

The index is a loopback server that accepts connections and never answers (or a directory
served over loopback, with a wheel built here); the installers are the real ones.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from bootstrap.cache import Layout
from bootstrap.deadline import Deadline
from bootstrap.errors import InstallTimeoutError
from bootstrap.fetch import download
from bootstrap.gpu import no_gpu
from bootstrap.installer import (
    Tool,
    install_command,
    requirements_file,
    run_install,
    run_streaming,
    tool_environ,
)
from bootstrap.plan import InstallPlan, plan
from bootstrap.profiles import Profile
from bootstrap.settings import Settings, load_settings
from tests.support.builders import build_wheel, write_lock
from tests.support.http import serve
from tests.support.stalled import StalledServer, stalled_server

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
PIP = Tool("pip", (sys.executable, "-m", "pip"))
DEADLINE_S = 4.0
# What the kill and the error take beyond the deadline, generously on a loaded 2-core machine.
SLACK_S = 10.0


def uv_tool() -> Tool:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("uv is not installed: scripts/test.sh puts it into .venv/bin")
        pytest.skip("uv is not installed: scripts/test.sh puts it into .venv/bin")
    return Tool("uv", (found,))


def tiny_plan(tmp_path: Path, settings: Settings, sha256: str) -> InstallPlan:
    locks = tmp_path / "locks"
    locks.mkdir(exist_ok=True)
    write_lock(locks, "storage", "none", PYTHON, f"tiny-pkg==1.0 \\\n    --hash=sha256:{sha256}\n")
    profile = Profile("storage", torch=False, flash_attn=False, imports=("tiny_pkg",))
    return plan(profile, no_gpu("test"), PYTHON, settings, locks_dir=locks)


def settings_for(tmp_path: Path, index_url: str) -> Settings:
    return load_settings(
        {
            "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
            "RUNPOD_SLIM_VOLUME": str(tmp_path / "no-volume"),
            "RUNPOD_SLIM_INDEX_URL": index_url,
            "RUNPOD_SLIM_INSTALL_TIMEOUT": str(DEADLINE_S),
            "RUNPOD_SLIM_RETRIES": "3",
        }
    )


def install(
    tool: Tool, tmp_path: Path, settings: Settings, base_env: dict[str, str], sha256: str
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    the_plan = tiny_plan(tmp_path, settings, sha256)
    argv = install_command(
        tool,
        the_plan,
        staging / "site",
        requirements_file(the_plan, staging, None),
        settings,
        sys.executable,
    )
    run_install(
        argv,
        tool_environ(base_env, settings, Layout(settings.cache_root)),
        retries=settings.retries,
        runner=run_streaming,
        log=print,
        cwd=staging,
        deadline=Deadline.start(settings.install_timeout_s),
    )


@pytest.mark.parametrize("kind", ["uv", "pip"])
def test_a_stalled_index_ends_the_install_at_its_deadline(tmp_path: Path, kind: str) -> None:
    tool = uv_tool() if kind == "uv" else PIP
    with stalled_server() as index:
        # Credentials in the index URL must not reach the error.
        url = f"http://worker:s3cret-t0ken@127.0.0.1:{index.port}/simple"
        settings = settings_for(tmp_path, url)
        began = time.monotonic()
        with pytest.raises(InstallTimeoutError) as info:
            install(tool, tmp_path, settings, dict(os.environ), "0" * 64)
        took = time.monotonic() - began
        assert index.connections >= 1
    assert DEADLINE_S <= took < DEADLINE_S + SLACK_S, f"took {took:.1f} s"
    message = str(info.value)
    assert message.startswith(
        f"the install was stopped after {info.value.spent_s:.0f} s, at its deadline "
        f"(RUNPOD_SLIM_INSTALL_TIMEOUT={DEADLINE_S:g}), while {tool.argv[0]}"
    )
    assert f"still waiting on the package index http://127.0.0.1:{index.port}/simple" in message
    assert "raise RUNPOD_SLIM_INSTALL_TIMEOUT, or start from a warm cache" in message
    assert "s3cret-t0ken" not in message and "worker:" not in message


def test_a_download_from_a_stalled_host_ends_at_the_deadline(tmp_path: Path) -> None:
    with stalled_server() as host:
        deadline = Deadline.start(2.0)
        with pytest.raises(Exception, match="no answer within the install's deadline") as info:
            download(
                f"{host.url}/wheel.whl",
                tmp_path / "wheel.whl",
                "0" * 64,
                ca_bundle=None,
                retries=5,
                log=print,
                deadline=deadline,
            )
        assert deadline.spent() < 2.0 + SLACK_S
    assert "RUNPOD_SLIM_INSTALL_TIMEOUT=2" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no partial download left


def served_index(tmp_path: Path) -> tuple[Path, str]:
    """A simple index (directory listings) holding one wheel built here; its sha256."""
    project = tmp_path / "index" / "simple" / "tiny-pkg"
    project.mkdir(parents=True)
    wheel = build_wheel(project, "tiny_pkg-1.0-py3-none-any.whl", {"tiny_pkg.py": "X = 1\n"})
    return tmp_path / "index", hashlib.sha256(wheel.read_bytes()).hexdigest()


def bad_pip_configuration(tmp_path: Path, stalled: StalledServer) -> dict[str, str]:
    """The machine's pip configuration at every level, each naming a stalled extra index."""
    conf = f"[global]\nextra-index-url = {stalled.url}/simple\ntimeout = 180\n"
    for where in ("env", "xdg-config/pip", "xdg-dirs/pip"):
        (tmp_path / where).mkdir(parents=True)
        (tmp_path / where / "pip.conf").write_text(conf)
    return {
        **os.environ,
        "PIP_CONFIG_FILE": str(tmp_path / "env" / "pip.conf"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),  # the user's pip.conf
        "XDG_CONFIG_DIRS": str(tmp_path / "xdg-dirs"),  # where pip looks for /etc/xdg/pip.conf
        "PIP_EXTRA_INDEX_URL": f"{stalled.url}/extra",
        "PIP_DEFAULT_TIMEOUT": "180",
    }


def test_the_pip_fallback_ignores_the_machines_pip_configuration(tmp_path: Path) -> None:
    root, sha256 = served_index(tmp_path)
    with serve(root) as index, stalled_server() as stalled:
        settings = settings_for(tmp_path, f"{index.url}/simple")
        install(PIP, tmp_path, settings, bad_pip_configuration(tmp_path, stalled), sha256)
        assert stalled.connections == 0
    assert (tmp_path / "staging" / "site" / "tiny_pkg.py").read_text() == "X = 1\n"


def test_a_worker_start_against_a_stalled_index_fails_at_its_deadline(tmp_path: Path) -> None:
    """The whole start, as a worker runs it: one line naming the index, the time and a fix."""
    import subprocess

    with stalled_server() as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_SLIM_", "UV_"))}
        env.update(
            HANDLER_TYPE="storage",
            RUNPOD_SLIM_CACHE=str(tmp_path / "cache"),
            RUNPOD_SLIM_VOLUME=str(tmp_path / "no-volume"),
            RUNPOD_SLIM_LOCAL_DIR=str(tmp_path / "local"),
            RUNPOD_SLIM_INDEX_URL=f"{server.url}/simple",
            RUNPOD_SLIM_INSTALL_TIMEOUT=str(DEADLINE_S),
            RUNPOD_SLIM_RETRIES="5",
        )
        began = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "bootstrap", "install"],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        took = time.monotonic() - began
    assert run.returncode == 1
    assert took < DEADLINE_S + SLACK_S + 5, f"took {took:.0f} s"
    assert "state=failed" in run.stderr and server.url in run.stderr
    assert "RUNPOD_SLIM_INSTALL_TIMEOUT" in run.stderr
    assert "Traceback" not in run.stderr
