"""Installer command lines, retries on network errors, and the smoke test in a real child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from bootstrap.cache import Layout
from bootstrap.deadline import Deadline
from bootstrap.ensure import custom_profile
from bootstrap.errors import CacheError, InstallError, InstallTimeoutError, SmokeTestError
from bootstrap.gpu import no_gpu, parse_gpu_spec
from bootstrap.installer import (
    RequirementImportError,
    Tool,
    install_command,
    requirements_file,
    run_install,
    run_streaming,
    smoke_test,
    sweep_tool_leftovers,
    tool_environ,
)
from bootstrap.plan import InstallPlan, plan
from bootstrap.profiles import PROFILES, Profile
from bootstrap.settings import Settings
from tests.support.builders import write_lock

Make = Callable[..., Settings]
REPO = Path(__file__).resolve().parents[2]
UV = Tool("uv", ("/bin/uv",))
PIP = Tool("pip", ("/usr/bin/python3", "-m", "pip"))


def test_hashed_lock_installs_without_resolution(make_settings: Make, locks_dir: Path) -> None:
    settings = make_settings(RUNPOD_SLIM_FIND_LINKS="/wheels")
    the_plan = plan(PROFILES["storage"], no_gpu("x"), "3.11", settings, locks_dir=locks_dir)
    argv = install_command(UV, the_plan, Path("/s"), Path("/r.txt"), settings, "/py")
    assert argv == [
        "/bin/uv",
        "pip",
        "install",
        "--target",
        "/s",
        "--python",
        "/py",
        "--no-config",
        "--only-binary",
        ":all:",
        "-r",
        "/r.txt",
        "--find-links",
        "/wheels",
        "--require-hashes",
        "--no-deps",
        "--index-url",
        "https://pypi.org/simple",
    ]
    pip = install_command(PIP, the_plan, Path("/s"), Path("/r.txt"), settings, "/py")
    assert pip[:5] == ["/usr/bin/python3", "-m", "pip", "install", "--isolated"]
    assert pip[-2:] == ["--require-hashes", "--no-deps"]


def test_installers_get_no_index_choices_from_the_machine(
    make_settings: Make, locks_dir: Path
) -> None:
    settings = make_settings(RUNPOD_SLIM_OFFLINE="1", SSL_CERT_FILE="/corp.pem")
    base = {
        "PATH": "/bin",
        "PIP_EXTRA_INDEX_URL": "http://elsewhere/simple",
        "PIP_DEFAULT_TIMEOUT": "180",
        "UV_EXTRA_INDEX_URL": "http://elsewhere/simple",
        "UV_HTTP_TIMEOUT": "30",
    }
    env = tool_environ(base, settings, Layout(settings.cache_root))
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert not [k for k in env if k.startswith("PIP_") and k != "PIP_CONFIG_FILE"]
    assert "UV_EXTRA_INDEX_URL" not in env and env["UV_HTTP_TIMEOUT"] == "30"
    assert env["SSL_CERT_FILE"] == "/corp.pem" and env["UV_OFFLINE"] == "1"
    # What PIP_* variables said, pip is told on its command line (it ignores them, isolated).
    the_plan = plan(PROFILES["storage"], no_gpu("x"), "3.11", settings, locks_dir=locks_dir)
    pip = install_command(PIP, the_plan, Path("/s"), Path("/r.txt"), settings, "/py")
    assert pip[pip.index("--cert") + 1] == "/corp.pem" and "--no-index" in pip


def test_unhashed_lock_resolves_torch_from_its_own_index(
    make_settings: Make, locks_dir: Path
) -> None:
    settings = make_settings(RUNPOD_SLIM_TORCH_VARIANT="cu128")
    the_plan = plan(
        PROFILES["audio"],
        parse_gpu_spec("NVIDIA B200:10.0:575.57.08"),
        "3.11",
        settings,
        locks_dir=locks_dir,
    )
    argv = install_command(UV, the_plan, Path("/s"), Path("/r.txt"), settings, "/py")
    assert "--require-hashes" not in argv and "--no-deps" not in argv
    assert argv[-6:] == [
        "--index",
        "https://torch.example/whl/cu128",
        "--default-index",
        "https://pypi.org/simple",
        "--index-strategy",
        "unsafe-best-match",
    ]


def test_hashed_lock_from_the_torch_index_keeps_hashes_and_names_the_index(
    make_settings: Make, locks_dir: Path
) -> None:
    # What scripts/lock-deps.sh writes where PyTorch's index is reachable: hashed, with index.
    write_lock(
        locks_dir,
        "audio",
        "cu128",
        "3.11",
        "torch==2.7.0+cu128 \\\n    --hash=sha256:" + "1" * 64 + "\n",
        index="https://torch.example/whl/cu128",
    )
    settings = make_settings()
    the_plan = plan(
        PROFILES["audio"],
        parse_gpu_spec("NVIDIA B200:10.0:575.57.08"),
        "3.11",
        settings,
        locks_dir=locks_dir,
    )
    argv = install_command(UV, the_plan, Path("/s"), Path("/r.txt"), settings, "/py")
    assert argv[-8:] == [
        "--require-hashes",
        "--no-deps",
        "--index",
        "https://torch.example/whl/cu128",
        "--default-index",
        "https://pypi.org/simple",
        "--index-strategy",
        "unsafe-best-match",
    ]


def test_flash_attn_wheel_is_pinned_by_path_and_hash(
    make_settings: Make, locks_dir: Path, tmp_path: Path
) -> None:
    the_plan = plan(
        PROFILES["audio"],
        parse_gpu_spec("NVIDIA A100:8.0:550.54.15"),
        "3.11",
        make_settings(),
        locks_dir=locks_dir,
    )
    wheel = tmp_path / the_plan.flash_attn.filename  # type: ignore[union-attr]
    text = requirements_file(the_plan, tmp_path, wheel).read_text()
    assert text.startswith(the_plan.lock.text)
    assert text.endswith(
        f"flash-attn @ {wheel.as_uri()} --hash=sha256:{the_plan.flash_attn.sha256}\n"  # type: ignore[union-attr]
    )


class ScriptedRunner:
    """Answers each command with the next (exit code, output) and records the commands."""

    def __init__(self, answers: list[tuple[int, list[str]]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []
        self.timeouts: list[float | None] = []

    def __call__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None,
        on_line: Callable[[str], None],
        timeout_s: float | None = None,
    ) -> tuple[int, list[str]]:
        self.calls.append(list(argv))
        self.timeouts.append(timeout_s)
        code, lines = self.answers.pop(0)
        for line in lines:
            on_line(line)
        return code, lines


def test_network_errors_are_retried_then_reported() -> None:
    refused = (
        2,
        [
            "error: Failed to fetch: `http://127.0.0.1:1/simple/boto3/`",
            "  Caused by: tcp connect error: Connection refused (os error 111)",
        ],
    )
    runner = ScriptedRunner([refused, refused, refused])
    waits: list[float] = []
    with pytest.raises(InstallError) as info:
        run_install(
            ["uv", "pip", "install"], {}, retries=2, runner=runner, log=print, sleep=waits.append
        )
    assert len(runner.calls) == 3 and waits == [2.0, 4.0]
    assert "the package index could not be reached (after 3 attempts)" in str(info.value)
    assert "Connection refused" in info.value.stderr_tail


def test_no_retry_starts_that_the_deadline_would_cut_short() -> None:
    now = [0.0]
    deadline = Deadline.start(10.0, clock=lambda: now[0])
    refused = (2, ["error: Failed to fetch: `https://user:pw@mirror.example/simple/boto3/`"])
    runner = ScriptedRunner([refused, refused, refused])

    def sleep(seconds: float) -> None:
        now[0] += seconds + 4.0  # and the attempt before it took 4 s

    with pytest.raises(InstallTimeoutError) as info:
        run_install(
            ["uv", "pip", "install", "--index-url", "https://user:pw@mirror.example/simple"],
            {},
            retries=5,
            runner=runner,
            log=print,
            sleep=sleep,
            deadline=deadline,
        )
    # The first try has 10 s; the second starts at 6 s with 4 s left, and a third would first
    # wait 4 s: none starts.
    assert runner.timeouts == [10.0, 4.0]
    assert "waiting on the package index https://mirror.example/simple" in str(info.value)
    assert "user:pw" not in str(info.value)


def test_other_errors_are_not_retried() -> None:
    runner = ScriptedRunner([(1, ["error: Hash mismatch for `boto3==1.0`"])])
    with pytest.raises(InstallError, match="exited with status 1: see the installer's output"):
        run_install(["uv", "pip", "install"], {}, retries=3, runner=runner, log=print)
    assert len(runner.calls) == 1


def test_a_retry_that_succeeds_is_enough() -> None:
    runner = ScriptedRunner([(2, ["connection reset by peer"]), (0, ["Installed 3 packages"])])
    run_install(["uv"], {}, retries=3, runner=runner, log=print, sleep=lambda _: None)
    assert len(runner.calls) == 2


def test_pip_gets_the_custom_stack_without_hashes_and_uv_with_them(
    make_settings: Make, tmp_path: Path
) -> None:
    # A resolved custom env has hashes on the stack's lines only: uv checks those, while pip
    # would demand a hash for every requirement once one has a hash, and fail.
    user = tmp_path / "user"
    user.mkdir()
    (user / "requirements.txt").write_text("pillow\n")
    settings = make_settings(
        HANDLER_TYPE="custom",
        RUNPOD_SLIM_CUSTOM_HANDLER="w:handler",
        RUNPOD_SLIM_CUSTOM_DIR=str(user),
        RUNPOD_SLIM_CUSTOM_GPU_STACK="1",
    )
    the_plan = plan(custom_profile(settings), no_gpu("x"), "3.11", settings)
    staging = tmp_path / "staging"
    staging.mkdir()
    requirements = requirements_file(the_plan, staging, None)
    uv = install_command(UV, the_plan, staging / "site", requirements, settings, "/py")
    pip = install_command(PIP, the_plan, staging / "site", requirements, settings, "/py")
    assert uv[uv.index("-r") + 1] == str(staging / "requirements.txt")
    assert "--hash=sha256:" in requirements.read_text()
    pip_file = Path(pip[pip.index("-r") + 1])
    assert pip_file == staging / "requirements-pip.txt"
    assert "--hash" not in pip_file.read_text()
    assert "torchvision==0.22.0" in pip_file.read_text() and "pillow" in pip_file.read_text()
    assert "--require-hashes" not in pip and "--require-hashes" not in uv


# --- smoke test: a real child interpreter on a real site dir ---------------------------------


def smoke_plan(make_settings: Make, locks_dir: Path, imports: tuple[str, ...]) -> InstallPlan:
    profile = Profile("storage", torch=False, flash_attn=False, imports=imports)
    return plan(profile, no_gpu("x"), "3.11", make_settings(), locks_dir=locks_dir)


def test_smoke_imports_from_the_env(make_settings: Make, locks_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "staging" / "site"
    (site / "alpha").mkdir(parents=True)
    (site / "alpha" / "__init__.py").write_text("VALUE = 1\n")
    logged: list[str] = []
    smoke_test(
        smoke_plan(make_settings, locks_dir, ("alpha",)),
        site,
        runner=run_streaming,
        log=logged.append,
    )
    assert logged == ["smoke: imported alpha"]


def test_smoke_names_the_package_that_failed(
    make_settings: Make, locks_dir: Path, tmp_path: Path
) -> None:
    site = tmp_path / "staging" / "site"
    site.mkdir(parents=True)
    (site / "good.py").write_text("")
    (site / "broken.py").write_text(
        "raise ImportError('libfoo.so.1: cannot open shared object file')\n"
    )
    with pytest.raises(SmokeTestError) as info:
        smoke_test(
            smoke_plan(make_settings, locks_dir, ("good", "broken")),
            site,
            runner=run_streaming,
            log=print,
        )
    assert info.value.package == "broken"
    assert "libfoo.so.1: cannot open shared object file" in info.value.stderr_tail


def test_smoke_refuses_a_module_found_outside_the_env(
    make_settings: Make, locks_dir: Path, tmp_path: Path
) -> None:
    site = tmp_path / "staging" / "site"
    site.mkdir(parents=True)
    # pytest is installed in the test venv, not in this env: it must not count.
    with pytest.raises(SmokeTestError) as info:
        smoke_test(
            smoke_plan(make_settings, locks_dir, ("pytest",)), site, runner=run_streaming, log=print
        )
    assert "pytest was imported from" in info.value.stderr_tail
    assert "not from the env" in info.value.stderr_tail


def dist_info(site: Path, name: str, files: dict[str, str], top_level: str | None = None) -> None:
    """An installed distribution as an installer leaves it: its files, METADATA and RECORD
    (and top_level.txt, which setuptools-built wheels carry and others do not)."""
    for path, text in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(text)
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    record = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]
    if top_level is not None:
        (info / "top_level.txt").write_text(top_level)
        record.append(f"{info.name}/top_level.txt")
    (info / "RECORD").write_text("".join(f"{path},,\n" for path in record))


def custom_smoke_plan(
    make_settings: Make, locks_dir: Path, site: Path, distributions: tuple[str, ...]
) -> InstallPlan:
    """A plan that imports `alpha` (as a custom one imports runpod), then `distributions`."""
    (site / "alpha.py").write_text("")
    return replace(
        smoke_plan(make_settings, locks_dir, ("alpha",)), smoke_distributions=distributions
    )


def test_smoke_imports_the_users_distributions_by_their_import_names(
    make_settings: Make, locks_dir: Path, tmp_path: Path
) -> None:
    site = tmp_path / "staging" / "site"
    # As PyYAML: two top-level names in top_level.txt, the public one is the import.
    dist_info(
        site,
        "PyYamlish",
        {"yamlish/__init__.py": "", "_yamlish/__init__.py": "raise ImportError('stub')\n"},
        top_level="_yamlish\nyamlish\n",
    )
    # As opencv-python-headless: no top_level.txt; RECORD lists cv3/, a .libs dir and a script.
    dist_info(
        site,
        "opencv-thing-headless",
        {
            "cv3/__init__.py": "",
            "cv3/data/haar.xml": "<xml/>",
            "opencv_thing_headless.libs/libz.so.1": "",
            "bin/thing-tool": "#!/bin/sh\n",
        },
    )
    # A namespace package (no __init__.py), as google-cloud-* and nvidia-* wheels ship.
    dist_info(site, "space-pkg", {"space/inner/__init__.py": ""})
    logged: list[str] = []
    smoke_test(
        custom_smoke_plan(
            make_settings,
            locks_dir,
            site,
            ("pyyamlish", "opencv-thing-headless", "space-pkg", "not-here-on-this-python"),
        ),
        site,
        runner=run_streaming,
        log=logged.append,
    )
    assert logged == [
        "smoke: imported alpha; your requirements' modules yamlish (pyyamlish), "
        "cv3 (opencv-thing-headless), space (space-pkg)"
    ]


def test_a_requirement_that_fails_at_import_is_named_with_its_error(
    make_settings: Make, locks_dir: Path, tmp_path: Path
) -> None:
    site = tmp_path / "staging" / "site"
    dist_info(
        site,
        "broken-dist",
        {"broken_mod/__init__.py": "raise RuntimeError('needs libfoo.so.1, not in this image')\n"},
    )
    with pytest.raises(RequirementImportError) as info:
        smoke_test(
            custom_smoke_plan(make_settings, locks_dir, site, ("broken-dist",)),
            site,
            runner=run_streaming,
            log=print,
        )
    assert info.value.package == "broken-dist" and info.value.module == "broken_mod"
    assert str(info.value) == (
        "your requirement broken-dist does not import (import broken_mod: RuntimeError: needs "
        "libfoo.so.1, not in this image); the env was not published. Fix it in "
        "storage-none-cp311.txt: pin a version that imports here, add what it needs, or "
        "remove it"
    )
    assert isinstance(info.value, SmokeTestError)


def test_a_requirement_error_never_names_the_staging_path(
    make_settings: Make, locks_dir: Path, tmp_path: Path
) -> None:
    site = tmp_path / "staging" / "site"
    dist_info(
        site,
        "native",
        {"native/__init__.py": "raise ImportError(__file__ + ': undefined symbol: _ZN3c10')\n"},
    )
    with pytest.raises(RequirementImportError) as info:
        smoke_test(
            custom_smoke_plan(make_settings, locks_dir, site, ("native",)),
            site,
            runner=run_streaming,
            log=print,
        )
    assert "ImportError: native/__init__.py: undefined symbol: _ZN3c10" in str(info.value)
    assert str(tmp_path) not in str(info.value)


def fake_torchvision(site: Path, nms: str) -> None:
    """A stand-in torch and torchvision whose nms does what `nms` says: the real mismatch
    (torchvision built for another torch) needs two 3 GB stacks; test_custom_gpu_stack.py
    runs the real nms."""
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text("def tensor(values):\n    return values\n")
    (site / "torchvision").mkdir()
    (site / "torchvision" / "__init__.py").write_text("from . import ops\n")
    (site / "torchvision" / "ops.py").write_text(f"def nms(boxes, scores, iou):\n    {nms}\n")


def test_smoke_runs_nms_where_torchvision_is_imported(
    make_settings: Make, locks_dir: Path, tmp_path: Path
) -> None:
    site = tmp_path / "staging" / "site"
    fake_torchvision(site, "return type('T', (), {'tolist': lambda self: [0]})()")
    logged: list[str] = []
    smoke_test(
        smoke_plan(make_settings, locks_dir, ("torch", "torchvision")),
        site,
        runner=run_streaming,
        log=logged.append,
    )
    assert logged == ["smoke: imported torch, torchvision, ran torchvision.ops.nms"]


def test_a_torchvision_built_for_another_torch_fails_the_smoke_test(
    make_settings: Make, locks_dir: Path, tmp_path: Path
) -> None:
    site = tmp_path / "staging" / "site"
    fake_torchvision(site, "raise RuntimeError('operator torchvision::nms does not exist')")
    with pytest.raises(SmokeTestError) as info:
        smoke_test(
            smoke_plan(make_settings, locks_dir, ("torch", "torchvision")),
            site,
            runner=run_streaming,
            log=print,
        )
    assert info.value.package == "torchvision.ops.nms on CPU"
    assert "RuntimeError: operator torchvision::nms does not exist" in info.value.stderr_tail


def test_layout_prepare_names_the_setting_when_the_root_is_unwritable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CacheError, match="Set RUNPOD_SLIM_CACHE to a writable directory"):
        Layout(blocker / "cache").prepare()


# --- leftovers and orphans -----------------------------------------------------------------


def test_sweep_removes_old_leftovers_and_never_a_live_starts(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    old = time.time() - 3600
    dead_unpack = layout.tools / ".uv-0.13.9-x86_64.1"
    live_unpack = layout.tools / ".uv-0.13.9-x86_64.5f3a9c"
    dead_part = layout.wheels / "d7f459fe4fd247d8" / ".uv.whl.0a1b.part"
    live_part = layout.wheels / "d7f459fe4fd247d8" / ".uv.whl.2c3d.part"
    published = layout.tools / "uv-0.13.9-x86_64" / "uv"
    for path in (dead_unpack / "uv", live_unpack / "uv", dead_part, live_part, published):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    for path in (dead_unpack / "uv", dead_unpack, dead_part, published, published.parent):
        os.utime(path, (old, old))
    # A dir whose own mtime is old but whose file is being written is live.
    os.utime(live_unpack, (old, old))
    logged: list[str] = []
    removed = sweep_tool_leftovers(layout, log=logged.append)
    assert sorted(removed) == sorted([dead_unpack, dead_part])
    assert live_unpack.exists() and live_part.exists() and published.exists()
    assert logged == [f"installer: removed 2 leftovers of killed starts from {tmp_path}"]


_BOOTSTRAP = """
import os, sys
from bootstrap.installer import run_streaming
child = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(300)"]
run_streaming(child, os.environ, None, lambda line: print(line, flush=True))
"""


def test_the_installer_dies_with_the_bootstrap(tmp_path: Path) -> None:
    bootstrap = subprocess.Popen(
        [sys.executable, "-c", _BOOTSTRAP],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert bootstrap.stdout is not None
    child = int(bootstrap.stdout.readline())
    bootstrap.kill()  # the bootstrap's python only: the installer is in its own process group
    bootstrap.communicate()
    deadline = time.monotonic() + 10
    while alive(child):
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the installer outlived the bootstrap that started it")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its reaping is left


def test_the_installers_temporary_files_stay_in_staging_and_go_after(tmp_path: Path) -> None:
    seen: list[str] = []

    def runner(
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None,
        on_line: Callable[[str], None],
        timeout_s: float | None = None,
    ) -> tuple[int, list[str]]:
        seen.append(env["TMPDIR"])
        (Path(env["TMPDIR"]) / "pip-unpack-x").mkdir()  # what a killed pip would leave
        return 0, []

    run_install(["uv", "pip", "install"], {}, retries=0, runner=runner, log=print, cwd=tmp_path)
    assert seen == [str(tmp_path / ".tmp")]
    assert not (tmp_path / ".tmp").exists()
