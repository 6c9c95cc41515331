"""volume:// paths through the storage handler's actions: the worker's cache is out of reach,
links are never followed, and nothing is written outside the volume.

Jobs go through handler.py's adapter (as the SDK calls them) with a real volume directory in
tmp_path; no S3 is needed for volume actions.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import pytest

from handler import adapt
from handlers import volume
from handlers.config import load_config
from handlers.storage import StorageHandler

PAYLOAD = base64.b64encode(b"print('owned')\n").decode()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under root (links not followed) with its size and mtime."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            info = os.lstat(os.path.join(folder, name))
            found[os.path.join(folder, name)] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Path]:
    """A volume holding the default cache (.runpod-slim) with an env's code in it."""
    vol = tmp_path / "volume"
    site = vol / ".runpod-slim" / "envs" / "k" / "site" / "runpod"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("# the SDK\n")
    (vol / ".runpod-slim" / "envs" / "k" / "manifest.json").write_text("{}")
    (vol / "data").mkdir()
    (vol / "data" / "a.txt").write_text("aaa")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_text("root:secret-hash:::\n")
    return {"volume": vol, "outside": outside, "tmp": tmp_path}


def run(place: dict[str, Path], **job_input: Any) -> dict[str, Any]:
    env = {"RUNPOD_SLIM_VOLUME": str(place["volume"]), "HOME": str(place["tmp"])}
    handler = StorageHandler(load_config(env))
    job = adapt(handler, lambda job, message: None)
    result: dict[str, Any] = asyncio.run(job({"id": "j", "input": job_input}))
    return result


CACHE_SPELLINGS = (
    ".runpod-slim/envs/k/site/runpod/__init__.py",
    "./.runpod-slim/envs/k/site/runpod/__init__.py",
    ".runpod-slim//envs/k/site/runpod/__init__.py",
    ".RUNPOD-SLIM/envs/k/site/runpod/__init__.py",
    ".Runpod-Slim/envs/k/manifest.json",
    ".runpod-slim/envs/k/manifest.json",
    ".runpod-slim/",
    ".runpod-slim",
    "./.runpod-slim/../.runpod-slim/envs/k/manifest.json",
)


@pytest.mark.parametrize("spelling", CACHE_SPELLINGS)
def test_no_action_reaches_the_cache_whatever_the_spelling(
    place: dict[str, Path], spelling: str
) -> None:
    before = snapshot(place["volume"] / ".runpod-slim")
    url = f"volume://{spelling}"
    jobs = [
        {"action": "copy", "source_base64": PAYLOAD, "destination": url},
        {"action": "copy", "source": url, "destination": "volume://stolen.bin"},
        {"action": "list", "source": url},
        {"action": "stat", "source": url},
        {"action": "delete", "source": url},
    ]
    for job in jobs:
        result = run(place, **job)
        assert set(result) == {"error"}, (job, result)
        assert len(result["error"]) < 300 and "Error" not in result["error"]
    assert snapshot(place["volume"] / ".runpod-slim") == before
    assert not (place["volume"] / "stolen.bin").exists()


def test_a_configured_cache_root_and_links_into_it_are_out_of_reach(
    place: dict[str, Path],
) -> None:
    vol = place["volume"]
    (vol / "my-cache" / "envs").mkdir(parents=True)
    (vol / "my-cache" / "envs" / "m.json").write_text("{}")
    os.symlink(vol / "my-cache", vol / "innocent")  # planted: a link into the cache
    os.symlink(".runpod-slim/envs", vol / "envs-link")
    env = {
        "RUNPOD_SLIM_VOLUME": str(vol),
        "RUNPOD_SLIM_CACHE": str(vol / "my-cache"),
        "HOME": str(place["tmp"]),
    }
    job = adapt(StorageHandler(load_config(env)), lambda job, message: None)
    for target in (
        "volume://my-cache/envs/m.json",
        "volume://MY-CACHE/envs/m.json",
        "volume://innocent/envs/m.json",
        "volume://envs-link/k/manifest.json",
    ):
        for action in (
            {"action": "copy", "source_base64": PAYLOAD, "destination": target},
            {"action": "delete", "source": target},
            {"action": "stat", "source": target},
        ):
            result = asyncio.run(job({"id": "j", "input": action}))
            assert set(result) == {"error"}, (action, result)
    assert (vol / "my-cache" / "envs" / "m.json").read_text() == "{}"
    listing = asyncio.run(job({"id": "j", "input": {"action": "list", "source": "volume://"}}))
    names = {e["name"]: e["type"] for e in listing["entries"]}
    assert ".runpod-slim" not in names and "my-cache" not in names
    assert names["innocent"] == "symlink" and names["data"] == "directory"


def test_links_out_of_the_volume_are_listed_as_links_and_never_followed(
    place: dict[str, Path],
) -> None:
    vol, outside = place["volume"], place["outside"]
    os.symlink(outside / "shadow", vol / "data" / "shadow")
    os.symlink(outside / "missing", vol / "data" / "dangling")
    os.symlink(outside, vol / "data" / "out")
    listing = run(place, action="list", source="volume://data")
    entries = {e["name"]: e for e in listing["entries"]}
    assert set(entries) == {"a.txt", "shadow", "dangling", "out"}
    assert entries["shadow"]["type"] == "symlink"
    assert entries["shadow"]["size"] == len(str(outside / "shadow"))  # the link's, not the file's
    assert entries["a.txt"] == {**entries["a.txt"], "type": "file", "size": 3}
    stat = run(place, action="stat", source="volume://data/shadow")
    assert stat["type"] == "symlink" and stat["size"] != len("root:secret-hash:::\n")
    for job in (
        {"action": "copy", "source": "volume://data/shadow", "destination": "volume://x.txt"},
        {"action": "copy", "source_base64": PAYLOAD, "destination": "volume://data/out/x"},
        {"action": "list", "source": "volume://data/out"},
        {"action": "stat", "source": "volume://data/out/shadow"},
    ):
        result = run(place, **job)
        assert set(result) == {"error"}, (job, result)
        assert "symbolic link" in result["error"] or "not a file" in result["error"]
    assert not (outside / "x").exists() and not (vol / "x.txt").exists()
    # Deleting a link removes the link, never what it points to.
    assert run(place, action="delete", source="volume://data/shadow")["deleted"] is True
    assert (outside / "shadow").read_text() == "root:secret-hash:::\n"


@pytest.mark.parametrize(
    "destination", ["volume://", "volume://.", "volume://./", "volume://data", "volume://data/"]
)
def test_a_folder_as_destination_writes_nothing_outside_the_volume(
    place: dict[str, Path], destination: str
) -> None:
    before = snapshot(place["tmp"])
    big = base64.b64encode(os.urandom(300_000)).decode()
    result = run(place, action="copy", source_base64=big, destination=destination)
    assert set(result) == {"error"}, result
    assert result["error"].endswith(
        ("name the file, such as volume://outputs/result.bin", "name a file in it")
    ), result
    assert str(place["tmp"]) not in result["error"]  # no temp file was made beside the volume
    assert snapshot(place["tmp"]) == before


def test_hostile_names_are_refused_in_one_sentence(place: dict[str, Path]) -> None:
    for name in ("a\x00b", "\udc80x", "n" * 256, "d/" * 3000, "/etc/passwd", "a/../../x"):
        result = run(place, action="copy", source_base64=PAYLOAD, destination=f"volume://{name}")
        assert set(result) == {"error"}, (name, result)
        assert len(result["error"]) < 300 and "internal error" not in result["error"]


def test_results_too_big_to_return_go_to_an_outputs_folder_not_the_cache(
    place: dict[str, Path],
) -> None:
    from handlers.base import JobContext

    config = load_config(
        {"RUNPOD_SLIM_VOLUME": str(place["volume"]), "RUNPOD_SLIM_INLINE_MAX_MB": "0.001"}
    )
    result = place["tmp"] / "r.bin"
    result.write_bytes(b"x" * 5000)
    out = JobContext("../job 7", {}, place["tmp"] / "work", config).deliver(result, None)
    assert out["destination"] == "volume://runpod-slim-outputs/_job_7/r.bin"
    assert (place["volume"] / "runpod-slim-outputs" / "_job_7" / "r.bin").stat().st_size == 5000


def test_model_folders_list_only_regular_files(place: dict[str, Path]) -> None:
    piper = place["volume"] / "models" / "piper"
    piper.mkdir(parents=True)
    (piper / "v.onnx").write_bytes(b"onnx")
    os.symlink(place["outside"] / "shadow", piper / "evil.onnx")
    config = load_config({"RUNPOD_SLIM_VOLUME": str(place["volume"])})
    assert [p.name for p in volume.files_in(config, "models", "piper")] == ["v.onnx"]
    os.symlink(place["outside"], place["volume"] / "models" / "kokoro")
    assert volume.files_in(config, "models", "kokoro") == []
