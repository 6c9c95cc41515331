"""bootstrap/catalog.py: one declaration of the handlers, their envs and the torch builds, read
by the settings, the planner, the registry, the lock check and the lock script."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import handlers
from bootstrap import catalog
from bootstrap.__main__ import main as cli
from bootstrap.errors import PlanError, SettingsError
from bootstrap.gpu import no_gpu, parse_gpu_spec
from bootstrap.plan import plan
from bootstrap.profiles import LOCKS_DIR, profile_for
from bootstrap.settings import Settings
from handler import build_handler, read_settings
from handlers.base import Handler
from handlers.errors import HandlerError
from tests.support.builders import write_lock

ROOT = Path(__file__).resolve().parents[2]
Make = Callable[..., Settings]
A100 = "NVIDIA A100-SXM4-80GB:8.0:550.54.15"


def test_every_handler_points_to_envs_the_catalog_declares() -> None:
    assert catalog.unknown_envs() == []
    for name, entry in catalog.HANDLERS.items():
        assert entry.name == name
        assert entry.entry_point.startswith(f"handlers.{name}:")
    assert catalog.DEFAULT_HANDLER in catalog.HANDLERS
    assert catalog.handler_types()[-1] == catalog.CUSTOM


def test_the_registry_and_the_settings_read_the_catalog() -> None:
    assert handlers.registry() == {n: h.entry_point for n, h in catalog.HANDLERS.items()}
    assert set(catalog.handler_types()) == {*catalog.HANDLERS, "custom"}


@pytest.mark.parametrize(
    ("engine", "env", "torch"),
    [
        ("", "tts-piper", False),
        ("piper", "tts-piper", False),
        ("Kokoro", "tts", True),
        ("qwen", "tts", True),
    ],
)
def test_the_tts_engine_picks_the_env(
    make_settings: Make, engine: str, env: str, torch: bool
) -> None:
    settings = make_settings(HANDLER_TYPE="tts", RUNPOD_SLIM_TTS_ENGINE=engine)
    assert settings.profile == env
    profile = profile_for(settings)
    assert profile.handler == env and profile.torch is torch


def test_an_unknown_tts_engine_stops_the_start_naming_the_choices(make_settings: Make) -> None:
    with pytest.raises(SettingsError) as info:
        make_settings(HANDLER_TYPE="tts", RUNPOD_SLIM_TTS_ENGINE="kokor")
    assert str(info.value) == (
        "RUNPOD_SLIM_TTS_ENGINE='kokor' is not valid: choose one of piper, kokoro, qwen "
        "(did you mean 'kokoro'?)"
    )


def test_another_handlers_engine_setting_is_not_read(make_settings: Make) -> None:
    assert make_settings(HANDLER_TYPE="storage", RUNPOD_SLIM_TTS_ENGINE="nope").profile == "storage"


def test_piper_plans_no_torch_and_kokoro_plans_the_gpu_stack(
    make_settings: Make, locks_dir: Path
) -> None:
    gpu = parse_gpu_spec(A100, variable="RUNPOD_SLIM_GPU")
    piper = make_settings(HANDLER_TYPE="tts")
    piper_plan = plan(profile_for(piper), gpu, "3.11", piper, locks_dir=locks_dir)
    assert piper_plan.variant == "none" and piper_plan.flash_attn is None
    assert piper_plan.lock.path.name == "tts-piper-none-cp311.txt"
    assert "torch" not in piper_plan.smoke_imports
    kokoro = make_settings(HANDLER_TYPE="tts", RUNPOD_SLIM_TTS_ENGINE="kokoro")
    kokoro_plan = plan(profile_for(kokoro), gpu, "3.11", kokoro, locks_dir=locks_dir)
    assert kokoro_plan.variant == catalog.DEFAULT_TORCH_BUILD
    assert kokoro_plan.flash_attn is not None and kokoro_plan.env_key.startswith("tts-cu126-")


def test_the_torch_builds_come_from_the_catalog() -> None:
    from bootstrap import plan as planner

    for variant, build in catalog.TORCH_BUILDS.items():
        assert planner.MIN_DRIVER.get(variant) == build.min_driver
        assert planner.KERNELS.get(variant) == build.kernels
        expected = f"https://idx.test/whl/{variant}" if build.torch_index else None
        assert build.index_url("https://idx.test/whl/") == expected


def test_the_cli_lists_what_the_lock_script_reads(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["catalog", "--handlers"]) == 0
    assert capsys.readouterr().out.split() == list(catalog.HANDLERS)
    assert cli(["catalog", "--locks"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["tts-piper", "none", "index", str(catalog.REQUIREMENTS_DIR / "tts-piper.in")] in lines
    assert ["audio", "cu128", "torch", str(catalog.REQUIREMENTS_DIR / "audio.in")] in lines
    assert len(lines) == sum(len(env.variants) for env in catalog.ENVS.values())
    assert cli(["catalog", "--check-locks"]) == 0


def test_the_lock_script_refuses_an_env_the_catalog_lacks() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "lock-deps.sh"), "tts-pipr"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        check=False,
    )
    assert result.returncode == 2
    assert "unknown env: tts-pipr (the catalog has: audio tts tts-piper video" in result.stderr


# ------------------------------------------------------------------- adding a handler

PROBE = '''
"""A handler added by a test: a package, one catalog entry, one requirements file."""
from handlers.base import Handler


class ProbeHandler(Handler):
    name = "probe"

    async def run(self, job):
        return {"ok": True}
'''
PROBE_SETTINGS = '''
"""The probe handler's own settings."""
from dataclasses import dataclass

from handlers.errors import SettingsError


@dataclass(frozen=True)
class Settings:
    level: int = 1


def load(environ):
    raw = environ.get("PROBE_LEVEL", "1")
    if not raw.isdigit():
        raise SettingsError("PROBE_LEVEL", raw, "a whole number")
    return Settings(int(raw))
'''


def test_adding_a_handler_is_a_package_an_entry_and_a_requirements_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Make,
    capsys: pytest.CaptureFixture[str],
) -> None:
    package = tmp_path / "code" / "probe_handler"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PROBE)
    (package / "settings.py").write_text(PROBE_SETTINGS)
    requirements = tmp_path / "probe.in"
    requirements.write_text("# The SDK.\nrunpod==1.12.0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    monkeypatch.setitem(
        catalog.ENVS,
        "probe",
        catalog.Env("probe", False, False, imports=("runpod",), requirements=requirements),
    )
    monkeypatch.setitem(
        catalog.HANDLERS,
        "probe",
        catalog.Handler(
            "probe", "probe_handler:ProbeHandler", "probe", settings_module="probe_handler.settings"
        ),
    )

    # The settings accept it and choose its env.
    settings = make_settings(HANDLER_TYPE="probe")
    assert (settings.handler_type, settings.profile) == ("probe", "probe")

    # The lock check demands its locks, in the real locks dir and through the CLI.
    assert catalog.missing_locks(LOCKS_DIR) == ["probe-none-cp310.txt", "probe-none-cp311.txt"]
    assert cli(["catalog", "--check-locks"]) == 1
    assert "the catalog needs probe-none-cp310.txt" in capsys.readouterr().err
    assert cli(["catalog", "--locks"]) == 0
    assert f"probe none index {requirements}" in capsys.readouterr().out.splitlines()

    # The planner refuses it without a lock, and plans it with one.
    locks = tmp_path / "locks"
    locks.mkdir()
    with pytest.raises(PlanError, match="no lock file for handler 'probe'"):
        plan(profile_for(settings), no_gpu("x"), "3.11", settings, locks_dir=locks)
    write_lock(locks, "probe", "none", "3.11", "runpod==1.12.0 \\\n    --hash=sha256:" + "0" * 64)
    planned = plan(profile_for(settings), no_gpu("x"), "3.11", settings, locks_dir=locks)
    assert planned.variant == "none" and planned.env_key.startswith("probe-none-cp311-")
    assert planned.smoke_imports == ("runpod",)

    # The registry loads its class, and the worker reads its own settings before the install.
    for name in ("probe_handler", "probe_handler.settings"):
        monkeypatch.delitem(sys.modules, name, raising=False)  # gone again after the test
    loaded = handlers.load("probe")
    assert issubclass(loaded, Handler) and loaded.__name__ == "ProbeHandler"
    environ = {"HANDLER_TYPE": "probe", "RUNPOD_SLIM_VOLUME": str(tmp_path / "none")}
    parsed = read_settings({**environ, "PROBE_LEVEL": "3"})
    assert parsed.handler is not None and getattr(parsed.handler, "level", None) == 3
    assert isinstance(build_handler({}, parsed), loaded)
    with pytest.raises(SettingsError, match="PROBE_LEVEL='high' is not valid") as info:
        read_settings({**environ, "PROBE_LEVEL": "high"})
    assert isinstance(info.value, HandlerError)  # the handlers' one base: the start catches it


def test_a_start_plans_the_env_the_engine_picks(make_settings: Make) -> None:
    """ensure()'s planner, given no profile, plans what profile_for says (tts: by engine)."""
    from bootstrap.ensure import make_plan

    piper = make_plan(make_settings(HANDLER_TYPE="tts"), no_gpu("test"), python="3.11")
    kokoro = make_plan(
        make_settings(HANDLER_TYPE="tts", RUNPOD_SLIM_TTS_ENGINE="kokoro"),
        no_gpu("test"),
        python="3.11",
    )
    assert piper.lock.path.name == "tts-piper-none-cp311.txt"
    assert kokoro.lock.path.name == "tts-cu126-cp311.txt"  # no GPU: the hashed PyPI build
