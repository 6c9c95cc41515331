"""A custom handler's requirements: the GPU stack's pins added, conflicts refused, no network.

These read the real stack locks in bootstrap/locks/ (files only) and requirements files
written into tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.custom_requirements import (
    custom_lock,
    is_stack_package,
    parse,
    satisfies,
    stack_requirements,
)
from bootstrap.errors import PlanError, SettingsError
from bootstrap.profiles import Lock
from bootstrap.settings import load_settings

FLASH = "2.8.0.post2"


def lock_for(
    tmp_path: Path,
    text: str,
    variant: str = "cu126",
    *,
    python: str = "3.11",
    gpu_stack: bool = True,
    stack_pins: str = "stack",
) -> Lock:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return custom_lock(
        path,
        variant=variant,
        python=python,
        gpu_stack=gpu_stack,
        stack_pins=stack_pins,
        flash_attn_version=FLASH,
    )


def pins(text: str) -> dict[str, str]:
    return {req.name: req.specifier for req in parse(text) if not isinstance(req, str)}


# ------------------------------------------------------------------ the stack's pins


@pytest.mark.parametrize("python", ["3.10", "3.11"])
def test_cu126_stack_pins_torchvision_with_hashes(python: str) -> None:
    stack = stack_requirements("cu126", python)
    assert stack["torch"].specifier == "==2.7.0"
    assert stack["torchaudio"].specifier == "==2.7.0"
    assert stack["torchvision"].specifier == "==0.22.0"
    assert stack["triton"].specifier == "==3.3.0"
    assert stack["nvidia-cudnn-cu12"].specifier == "==9.5.1.17"
    assert all(any("--hash=sha256:" in line for line in req.lines) for req in stack.values())
    # torch's own dependencies (numpy, pillow, ...) are not the stack's: the user's resolve them
    assert "numpy" not in stack and "pillow" not in stack and "sympy" not in stack


@pytest.mark.parametrize("variant", ["cu128", "cpu"])
def test_pytorch_index_variants_pin_the_three_builds(variant: str) -> None:
    stack = stack_requirements(variant, "3.11")
    assert {name: req.specifier for name, req in stack.items()} == {
        "torch": "==2.7.0",
        "torchaudio": "==2.7.0",
        "torchvision": "==0.22.0",
    }


def test_stack_packages_are_the_torch_family_and_cuda_wheels() -> None:
    for name in ("torch", "TorchVision", "torchaudio", "triton", "flash_attn", "nvidia-cudnn-cu12"):
        assert is_stack_package(name), name
    for name in ("nvidia-ml-py", "torchmetrics", "numpy", "nvidia-dali-cuda120"):
        assert not is_stack_package(name), name


# ------------------------------------------------------------------ plain requirements


def test_the_stack_replaces_the_users_compatible_pins(tmp_path: Path) -> None:
    text = "# my worker\ntorch==2.7.0\ntorchvision>=0.20  # vision\nPyYAML==6.0.3\npillow\n"
    lock = lock_for(tmp_path, text)
    found = pins(lock.text)
    assert found["torch"] == "==2.7.0" and found["torchvision"] == "==0.22.0"
    assert found["torchaudio"] == "==2.7.0" and found["nvidia-cudnn-cu12"] == "==9.5.1.17"
    assert found["pyyaml"] == "==6.0.3" and found["pillow"] == "" and found["runpod"] == "==1.12.0"
    assert "torchvision>=0.20" not in lock.text  # one requirement per package: the stack's
    assert lock.text.count("torch==2.7.0") == 1
    assert "--hash=sha256:" in lock.text and not lock.hashed  # resolved; the stack's checked
    assert lock.user is not None
    assert lock.user.stack == "added"
    assert lock.user.distributions == ("pyyaml", "pillow")  # the stack's are smoke-tested


def test_without_the_gpu_stack_nothing_is_added_but_runpod(tmp_path: Path) -> None:
    lock = lock_for(tmp_path, "six==1.17.0\n", gpu_stack=False)
    assert lock.text == "six==1.17.0\nrunpod==1.12.0\n"
    assert lock.user is not None and lock.user.stack == "none"


@pytest.mark.parametrize(
    ("line", "theirs", "ours"),
    [
        ("torch==2.6.0", "torch==2.6.0", "torch==2.7.0"),
        ("torchvision==0.21.0", "torchvision==0.21.0", "torchvision==0.22.0"),
        ("torchaudio>=2.8", "torchaudio>=2.8", "torchaudio==2.7.0"),
        (
            "nvidia-cudnn-cu12==9.1.0.70",
            "nvidia-cudnn-cu12==9.1.0.70",
            "nvidia-cudnn-cu12==9.5.1.17",
        ),
        ("triton<3", "triton<3", "triton==3.3.0"),
        ("flash-attn==2.7.4.post1", "flash-attn==2.7.4.post1", f"flash-attn=={FLASH}"),
        (
            "torch @ https://download.pytorch.org/whl/cu121/torch-2.6.0.whl",
            "torch @ https://download.pytorch.org/whl/cu121/torch-2.6.0.whl",
            "torch==2.7.0",
        ),
    ],
)
def test_a_conflicting_pin_is_refused_naming_both(
    tmp_path: Path, line: str, theirs: str, ours: str
) -> None:
    with pytest.raises(PlanError) as info:
        lock_for(tmp_path, f"numpy<2\n{line}\n")
    message = str(info.value)
    assert f"pins {theirs}, but RUNPOD_SLIM_CUSTOM_GPU_STACK=1 installs {ours} " in message
    assert "nothing was downloaded" in message
    assert "RUNPOD_SLIM_CUSTOM_STACK_PINS=user" in message


def test_every_conflict_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as info:
        lock_for(tmp_path, "torch==2.6.0\ntorchvision==0.21.0\nflash-attn==2.7.4.post1\n")
    assert (
        f"pins torch==2.6.0, torchvision==0.21.0 and flash-attn==2.7.4.post1, but "
        f"RUNPOD_SLIM_CUSTOM_GPU_STACK=1 installs torch==2.7.0, torchvision==0.22.0 and "
        f"flash-attn=={FLASH} (the cu126 build of the GPU stack)"
    ) in str(info.value)


def test_stack_pins_user_installs_theirs_and_leaves_the_stack_out(tmp_path: Path) -> None:
    text = "torch==2.6.0\ntorchvision==0.21.0\n"
    lock = lock_for(tmp_path, text, stack_pins="user")
    assert lock.text == text + "runpod==1.12.0\n"
    assert lock.user is not None
    assert lock.user.stack == "theirs"
    assert lock.user.own_stack_pins == ("torch==2.6.0", "torchvision==0.21.0")


def test_pins_without_the_gpu_stack_are_the_users_business(tmp_path: Path) -> None:
    lock = lock_for(tmp_path, "torch==2.6.0\n", gpu_stack=False)
    assert lock.text == "torch==2.6.0\nrunpod==1.12.0\n"


def test_a_hashed_lock_that_conflicts_is_refused_too(tmp_path: Path) -> None:
    text = (
        f"runpod==1.12.0 \\\n    --hash=sha256:{'1' * 64}\n"
        f"torch==2.6.0 \\\n    --hash=sha256:{'2' * 64}\n"
    )
    with pytest.raises(PlanError, match=r"pins torch==2\.6\.0, but"):
        lock_for(tmp_path, text)
    lock = lock_for(tmp_path, text.replace("2.6.0", "2.7.0"))
    assert lock.hashed and lock.text == text.replace("2.6.0", "2.7.0")  # installed as it is
    assert lock.user is not None and lock.user.stack == "none"


def test_an_unreadable_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="set RUNPOD_SLIM_CUSTOM_REQUIREMENTS"):
        custom_lock(tmp_path / "missing.txt", variant="none", python="3.11", gpu_stack=False)


def test_options_comments_and_unnamed_lines_are_kept_as_they_are(tmp_path: Path) -> None:
    text = "--extra-index-url https://example.invalid/simple\n./local_pkg\n# a comment\n\nsix\n"
    lock = lock_for(tmp_path, text, gpu_stack=False)
    assert lock.text == text.rstrip("\n") + "\nrunpod==1.12.0\n"
    assert lock.user is not None and lock.user.distributions == ("six",)


# ------------------------------------------------------------------ versions


@pytest.mark.parametrize(
    ("version", "specifier", "expected"),
    [
        ("2.7.0", "", True),
        ("2.7.0", "==2.7.0", True),
        ("2.7.0", "==2.7", True),
        ("2.7.0", "==2.7.0+cu128", True),  # a build of the same release: the variant decides
        ("2.7.0", "==2.6.0", False),
        ("2.7.0", "==2.7.*", True),
        ("2.7.0", "==2.6.*", False),
        ("2.7.0", "!=2.7.0", False),
        ("2.7.0", ">=2.6,<2.8", True),
        ("2.7.0", ">=2.8", False),
        ("2.7.0", "<2.7.0rc1", False),
        ("2.7.0", ">2.7.0.dev1", True),
        ("2.7.0", "~=2.7", True),
        ("2.7.0", "~=2.6.0", False),
        ("2.8.0.post2", "==2.8.0", False),
        ("2.8.0.post2", ">=2.8.0", True),
        ("2.7.0", "===2.7.0", True),
        ("2.7.0", "==not.a.version", None),
    ],
)
def test_satisfies(version: str, specifier: str, expected: bool | None) -> None:
    assert satisfies(version, specifier) is expected


# ------------------------------------------------------------------ the setting


def test_stack_pins_setting(tmp_path: Path) -> None:
    base = {
        "HANDLER_TYPE": "custom",
        "RUNPOD_SLIM_CUSTOM_HANDLER": "w:handler",
        "RUNPOD_SLIM_CACHE": str(tmp_path),
    }
    settings = load_settings(base)
    assert settings.custom is not None and settings.custom.stack_pins == "stack"
    settings = load_settings({**base, "RUNPOD_SLIM_CUSTOM_STACK_PINS": "User"})
    assert settings.custom is not None and settings.custom.stack_pins == "user"
    with pytest.raises(SettingsError) as info:
        load_settings({**base, "RUNPOD_SLIM_CUSTOM_STACK_PINS": "mine"})
    assert str(info.value) == (
        "RUNPOD_SLIM_CUSTOM_STACK_PINS='mine' is not valid: choose one of stack, user"
    )
