"""uv provisioned from the package index when it is not on PATH: fetched, hash-checked, run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bootstrap.cache import Layout
from bootstrap.installer import UV_VERSION, find_tool
from bootstrap.settings import load_settings


def test_uv_is_fetched_from_the_index_and_reused(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "RUNPOD_SLIM_CACHE": str(tmp_path / "cache"),
            "RUNPOD_SLIM_WHEELHOUSE": str(tmp_path / "no-wheelhouse"),
            "RUNPOD_SLIM_INSTALLER": "uv",
        }
    )
    layout = Layout(settings.cache_root)
    logged: list[str] = []
    tool = find_tool(settings, layout, log=logged.append, which=lambda _: None)
    assert tool.kind == "uv"
    assert logged == [f"installer: fetching uv {UV_VERSION} from the index"]
    version = subprocess.run([*tool.argv, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith(f"uv {UV_VERSION}")
    again = find_tool(settings, layout, log=logged.append, which=lambda _: None)
    assert again == tool and len(logged) == 1  # the second start found it in the cache
