"""Settings: defaults, the cache root's choice, and refusals that name variable and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.errors import SettingsError
from bootstrap.settings import load_settings


def test_defaults_without_a_volume(tmp_path: Path) -> None:
    settings = load_settings({"HOME": str(tmp_path), "RUNPOD_SLIM_VOLUME": str(tmp_path / "nope")})
    assert settings.handler_type == "storage"
    assert settings.cache_root == tmp_path / ".cache" / "runpod-slim"
    assert settings.gpu == "auto" and settings.torch_variant == "auto"
    assert settings.flash_attn == "auto" and settings.offline is False
    assert settings.index_url == "https://pypi.org/simple"
    assert settings.volume_attached is False


def test_cache_goes_on_the_volume_when_one_is_attached(tmp_path: Path) -> None:
    settings = load_settings({"RUNPOD_SLIM_VOLUME": str(tmp_path)})
    assert settings.cache_root == tmp_path / ".runpod-slim"
    assert settings.volume_attached


def test_explicit_cache_and_xdg(tmp_path: Path) -> None:
    env = {"RUNPOD_SLIM_VOLUME": str(tmp_path / "nope"), "XDG_CACHE_HOME": str(tmp_path / "x")}
    assert load_settings(env).cache_root == tmp_path / "x" / "runpod-slim"
    env["RUNPOD_SLIM_CACHE"] = str(tmp_path / "c")
    assert load_settings(env).cache_root == tmp_path / "c"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "HANDLER_TYPE",
            "audi",
            "HANDLER_TYPE='audi' is not valid: choose one of audio, tts, "
            "video, storage, custom (did you mean 'audio'?)",
        ),
        (
            "RUNPOD_SLIM_TORCH_VARIANT",
            "cu124",
            "RUNPOD_SLIM_TORCH_VARIANT='cu124' is not valid: "
            "choose one of auto, cu126, cu128, cpu (did you mean 'cu128'?)",
        ),
        (
            "RUNPOD_SLIM_FLASH_ATTN",
            "yes",
            "RUNPOD_SLIM_FLASH_ATTN='yes' is not valid: choose one of auto, off, required",
        ),
        (
            "RUNPOD_SLIM_OFFLINE",
            "maybe",
            "RUNPOD_SLIM_OFFLINE='maybe' is not valid: use 1/true/yes/on or 0/false/no/off",
        ),
        (
            "RUNPOD_SLIM_LOCK_TIMEOUT",
            "soon",
            "RUNPOD_SLIM_LOCK_TIMEOUT='soon' is not valid: a number >= 1",
        ),
        (
            "RUNPOD_SLIM_INDEX_URL",
            "pypi",
            "RUNPOD_SLIM_INDEX_URL='pypi' is not valid: an https://, http:// or file:// URL",
        ),
        (
            "RUNPOD_SLIM_GPU",
            "H100",
            "RUNPOD_SLIM_GPU='H100' is not valid: auto, none, or "
            "NAME:MAJOR.MINOR:DRIVER such as 'NVIDIA H100 80GB HBM3:9.0:550.54.15'",
        ),
    ],
)
def test_bad_values_are_refused_with_variable_value_and_choices(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({variable: value})
    assert str(info.value) == message
    assert (info.value.variable, info.value.value) == (variable, value)


def test_values_are_normalised() -> None:
    settings = load_settings(
        {
            "HANDLER_TYPE": " Audio ",
            "RUNPOD_SLIM_OFFLINE": "TRUE",
            "RUNPOD_SLIM_FIND_LINKS": "/a, /b  http://c/",
            "RUNPOD_SLIM_INDEX_URL": "http://127.0.0.1:1/simple/",
            "RUNPOD_SLIM_GPU": "NVIDIA A10:8.6:535.104.05",
        }
    )
    assert settings.handler_type == "audio" and settings.offline
    assert settings.find_links == ("/a", "/b", "http://c/")
    assert settings.index_url == "http://127.0.0.1:1/simple"
    assert settings.gpu == "NVIDIA A10:8.6:535.104.05"


def test_custom_ca_bundle_is_picked_up() -> None:
    assert load_settings({"REQUESTS_CA_BUNDLE": "/etc/corp.pem"}).ca_bundle == "/etc/corp.pem"
    both = {"REQUESTS_CA_BUNDLE": "/b.pem", "SSL_CERT_FILE": "/a.pem"}
    assert load_settings(both).ca_bundle == "/a.pem"


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("RUNPOD_SLIM_RETRIES", "inf", "a whole number >= 0"),
        ("RUNPOD_SLIM_RETRIES", "nan", "a whole number >= 0"),
        ("RUNPOD_SLIM_RETRIES", "2.5", "a whole number >= 0"),
        ("RUNPOD_SLIM_KEEP_ENVS", "inf", "a whole number >= 1"),
        ("RUNPOD_SLIM_KEEP_ENVS", "0", "a whole number >= 1"),
        ("RUNPOD_SLIM_LOCK_TIMEOUT", "nan", "a number >= 1"),
        ("RUNPOD_SLIM_LOCK_TIMEOUT", "inf", "a number >= 1"),
        ("RUNPOD_SLIM_LOCK_TIMEOUT", "-inf", "a number >= 1"),
    ],
)
def test_numbers_that_never_end_are_refused(variable: str, value: str, allowed: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({variable: value})
    assert str(info.value) == f"{variable}={value!r} is not valid: {allowed}"


def test_whole_numbers_are_read() -> None:
    settings = load_settings({"RUNPOD_SLIM_RETRIES": "0", "RUNPOD_SLIM_KEEP_ENVS": " 7 "})
    assert (settings.retries, settings.keep_envs) == (0, 7)


def test_a_volume_that_is_a_regular_file_is_refused(tmp_path: Path) -> None:
    regular = tmp_path / "volume"
    regular.write_text("")
    with pytest.raises(SettingsError) as info:
        load_settings({"RUNPOD_SLIM_VOLUME": str(regular), "HOME": str(tmp_path)})
    assert str(info.value) == (
        f"RUNPOD_SLIM_VOLUME={str(regular)!r} is not valid: "
        "the network volume's mount point, a directory"
    )
