""".runpod/hub.json and .runpod/tests.json, the RunPod Hub listing: what the worker accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bootstrap import catalog
from bootstrap.settings import (
    FLASH_ATTN,
    FLASH_ATTN_POLICIES,
    HANDLER_TYPE,
    TORCH_VARIANT,
    TORCH_VARIANTS,
)
from handlers.storage import ACTIONS, FIELDS
from handlers.validation import validate

HUB = Path(__file__).resolve().parents[2] / ".runpod"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HUB / name).read_text())
    return data


def env_entry(key: str) -> dict[str, Any]:
    entries = [e for e in load("hub.json")["config"]["env"] if e["key"] == key]
    assert len(entries) == 1, f"{key} is listed {len(entries)} times"
    return entries[0]


def test_hub_json_has_the_hubs_required_fields() -> None:
    hub = load("hub.json")
    assert hub["type"] == "serverless"
    assert hub["category"] in ("audio", "embedding", "language", "video", "image")
    assert hub["title"] and hub["description"]
    config = hub["config"]
    assert config["runsOn"] == "GPU" and config["gpuCount"] >= 1 and config["gpuIds"]
    assert isinstance(config["containerDiskInGb"], int)
    # The default torch build (catalog.py: cu126) wants CUDA 12.6 drivers or newer.
    assert all(tuple(map(int, v.split("."))) >= (12, 6) for v in config["allowedCudaVersions"])
    for entry in config["env"]:
        assert ("value" in entry) != ("input" in entry), entry["key"]


def test_every_handler_option_is_a_handler_the_bootstrap_accepts() -> None:
    field = env_entry(HANDLER_TYPE)["input"]
    values = [option["value"] for option in field["options"]]
    # Every handler of the catalog is offered (custom needs code the Hub cannot give).
    assert sorted(values) == sorted(catalog.HANDLERS)
    assert field["default"] in values


def test_there_is_one_preset_per_handler() -> None:
    presets = load("hub.json")["config"]["presets"]
    chosen = [preset["defaults"][HANDLER_TYPE] for preset in presets]
    assert sorted(chosen) == sorted(catalog.HANDLERS)
    for preset in presets:
        assert set(preset["defaults"]) <= {e["key"] for e in load("hub.json")["config"]["env"]}


@pytest.mark.parametrize(
    ("key", "allowed"),
    [(TORCH_VARIANT, TORCH_VARIANTS), (FLASH_ATTN, FLASH_ATTN_POLICIES)],
)
def test_option_inputs_offer_only_values_the_settings_accept(
    key: str, allowed: tuple[str, ...]
) -> None:
    field = env_entry(key)["input"]
    assert {option["value"] for option in field["options"]} <= set(allowed)
    assert field["default"] in allowed


def test_each_hub_test_is_a_valid_storage_job() -> None:
    spec = load("tests.json")
    env = {item["key"]: item["value"] for item in spec["config"]["env"]}
    assert env[HANDLER_TYPE] == "storage"
    assert spec["tests"]
    for test in spec["tests"]:
        job = test["input"]
        assert job["action"] in ACTIONS, test["name"]
        validate({k: v for k, v in job.items() if k != "action"}, FIELDS[job["action"]])
        assert isinstance(test.get("timeout", 0), int)
