"""Plans for the GPUs RunPod offers, drivers too old, and the env key's stability."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bootstrap.ensure import custom_profile
from bootstrap.errors import PlanError
from bootstrap.gpu import GpuInfo, no_gpu, parse_gpu_spec
from bootstrap.plan import FLASH_ATTN_RELEASE, InstallPlan, plan
from bootstrap.profiles import PROFILES, read_lock
from bootstrap.settings import Settings
from tests.support.builders import write_lock

T4 = "Tesla T4:7.5:550.54.15"
A100 = "NVIDIA A100-SXM4-80GB:8.0:550.54.15"
A10 = "NVIDIA A10:8.6:535.104.05"
L4 = "NVIDIA L4:8.9:550.90.07"
H100 = "NVIDIA H100 80GB HBM3:9.0:550.54.15"
B200 = "NVIDIA B200:10.0:570.124.06"
RTX5090 = "NVIDIA GeForce RTX 5090:12.0:575.57.08"
K80 = "Tesla K80:3.7:470.82.01"

Make = Callable[..., Settings]


def plan_for(
    make_settings: Make,
    locks_dir: Path,
    handler: str,
    gpu: GpuInfo | str,
    python: str = "3.11",
    **env: str,
) -> InstallPlan:
    info = parse_gpu_spec(gpu) if isinstance(gpu, str) else gpu
    return plan(PROFILES[handler], info, python, make_settings(**env), locks_dir=locks_dir)


@pytest.mark.parametrize(
    ("gpu", "variant", "flash"),
    [
        (no_gpu("NVML library not found"), "cu126", False),
        (T4, "cu126", False),
        (A100, "cu126", True),
        (A10, "cu126", True),
        (L4, "cu126", True),
        (H100, "cu126", True),
        (B200, "cu128", False),
        (RTX5090, "cu128", False),
    ],
)
def test_audio_plan_per_gpu(
    make_settings: Make, locks_dir: Path, gpu: GpuInfo | str, variant: str, flash: bool
) -> None:
    result = plan_for(make_settings, locks_dir, "audio", gpu)
    assert result.variant == variant
    assert (result.flash_attn is not None) == flash
    skipped = {s.package for s in result.skipped}
    assert skipped == (set() if flash else {"flash-attn"})


def test_flash_attn_wheel_is_the_release_file_for_the_python(
    make_settings: Make, locks_dir: Path
) -> None:
    for python, tag in (("3.10", "cp310"), ("3.11", "cp311")):
        wheel = plan_for(make_settings, locks_dir, "audio", H100, python).flash_attn
        assert wheel.filename == (
            f"flash_attn-2.8.0.post2+cu12torch2.7cxx11abiTRUE-{tag}-{tag}-linux_x86_64.whl"
        )
        assert wheel.url == (
            "https://github.com/Dao-AILab/flash-attention/releases/download/"
            f"v2.8.0.post2/{wheel.filename}"
        )
        assert wheel.sha256 == FLASH_ATTN_RELEASE.sha256[tag]


def test_flash_attn_mirror_replaces_the_release_host(make_settings: Make, locks_dir: Path) -> None:
    result = plan_for(
        make_settings,
        locks_dir,
        "tts",
        A100,
        RUNPOD_SLIM_FLASH_ATTN_MIRROR="http://127.0.0.1:9/fa/",
    )
    assert result.flash_attn.url.startswith("http://127.0.0.1:9/fa/v2.8.0.post2/flash_attn-")


def test_t4_skip_reason_names_the_capability(make_settings: Make, locks_dir: Path) -> None:
    [skipped] = plan_for(make_settings, locks_dir, "audio", T4).skipped
    assert skipped.reason == (
        "Tesla T4 (compute capability 7.5): FlashAttention 2 needs compute capability 8.0 "
        "(Ampere) or newer; PyTorch SDPA is used"
    )


def test_flash_attn_required_on_t4_is_refused(make_settings: Make, locks_dir: Path) -> None:
    with pytest.raises(
        PlanError, match=r"RUNPOD_SLIM_FLASH_ATTN=required.*Tesla T4 \(compute capability 7.5\)"
    ):
        plan_for(make_settings, locks_dir, "audio", T4, RUNPOD_SLIM_FLASH_ATTN="required")


def test_flash_attn_required_without_gpu_is_refused(make_settings: Make, locks_dir: Path) -> None:
    with pytest.raises(PlanError, match=r"required.*no GPU"):
        plan_for(make_settings, locks_dir, "audio", no_gpu("x"), RUNPOD_SLIM_FLASH_ATTN="required")


def test_flash_attn_off(make_settings: Make, locks_dir: Path) -> None:
    result = plan_for(make_settings, locks_dir, "audio", H100, RUNPOD_SLIM_FLASH_ATTN="off")
    assert result.flash_attn is None
    assert [s.reason for s in result.skipped] == ["RUNPOD_SLIM_FLASH_ATTN=off"]


def test_flash_attn_has_no_wheel_for_unpinned_python(make_settings: Make, locks_dir: Path) -> None:
    write_lock(locks_dir, "audio", "cu126", "3.12", "x==1 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    [skipped] = plan_for(make_settings, locks_dir, "audio", H100, "3.12").skipped
    assert "no pinned flash-attn 2.8.0.post2 wheel for cp312" in skipped.reason


def test_forced_cu126_on_blackwell_is_refused(make_settings: Make, locks_dir: Path) -> None:
    with pytest.raises(PlanError) as info:
        plan_for(make_settings, locks_dir, "audio", RTX5090, RUNPOD_SLIM_TORCH_VARIANT="cu126")
    assert str(info.value) == (
        "RUNPOD_SLIM_TORCH_VARIANT=cu126 cannot run on NVIDIA GeForce RTX 5090 (compute "
        "capability 12.0): the cu126 build has kernels for sm_50 to sm_90 only. Use "
        "RUNPOD_SLIM_TORCH_VARIANT=auto or cu128"
    )


def test_driver_too_old_for_cu126(make_settings: Make, locks_dir: Path) -> None:
    with pytest.raises(PlanError) as info:
        plan_for(make_settings, locks_dir, "audio", "Tesla V100-SXM2-16GB:7.0:470.82.01")
    message = str(info.value)
    assert message.startswith(
        "NVIDIA driver 470.82.01 (CUDA <= 11.4) is too old for the cu126 build of torch 2.7.0: "
        "it needs driver >= 525.60.13."
    )
    assert "never from the container" in message


def test_driver_too_old_for_blackwell(make_settings: Make, locks_dir: Path) -> None:
    with pytest.raises(
        PlanError,
        match=r"driver 560\.35\.03 \(CUDA <= 12\.6\) is too old for the cu128 build.*>= 570\.26",
    ):
        plan_for(make_settings, locks_dir, "audio", "NVIDIA B200:10.0:560.35.03")


def test_gpu_older_than_any_build_is_refused(make_settings: Make, locks_dir: Path) -> None:
    with pytest.raises(
        PlanError, match=r"Tesla K80 \(compute capability 3\.7\) has no kernels in the cu126 build"
    ):
        plan_for(make_settings, locks_dir, "audio", "Tesla K80:3.7:535.104.05")


def test_mixed_gpus_plan_for_the_oldest(make_settings: Make, locks_dir: Path) -> None:
    a100, t4 = parse_gpu_spec(A100), parse_gpu_spec(T4)
    mixed = GpuInfo(a100.devices + t4.devices, "550.54.15", (12, 4))
    result = plan_for(make_settings, locks_dir, "audio", mixed)
    assert result.flash_attn is None


def test_video_and_storage_get_no_torch_whatever_the_gpu(
    make_settings: Make, locks_dir: Path
) -> None:
    for handler in ("video", "storage"):
        for gpu in (H100, RTX5090, K80, no_gpu("none")):
            result = plan_for(make_settings, locks_dir, handler, gpu)
            assert result.variant == "none"
            assert result.flash_attn is None and result.skipped == ()
            assert not result.cuda_smoke


def test_spec_gpu_is_not_smoke_tested_on_cuda(make_settings: Make, locks_dir: Path) -> None:
    assert not plan_for(make_settings, locks_dir, "audio", H100).cuda_smoke


def test_cpu_and_cu128_plans_resolve_from_the_torch_index(
    make_settings: Make, locks_dir: Path
) -> None:
    cpu = plan_for(make_settings, locks_dir, "audio", no_gpu("x"), RUNPOD_SLIM_TORCH_VARIANT="cpu")
    assert cpu.variant == "cpu" and cpu.torch_index == "https://torch.example/whl/cpu"
    hashed = plan_for(make_settings, locks_dir, "audio", H100)
    assert hashed.torch_index is None


def test_missing_lock_names_the_pythons_that_have_one(make_settings: Make, locks_dir: Path) -> None:
    with pytest.raises(
        PlanError,
        match=r"no lock file for handler 'storage', variant none, Python 3\.13 .*"
        r"locks exist for Python 3\.10, 3\.11",
    ):
        plan_for(make_settings, locks_dir, "storage", no_gpu("x"), "3.13")


def test_plan_json_has_the_documented_fields(make_settings: Make, locks_dir: Path) -> None:
    data = plan_for(make_settings, locks_dir, "audio", A100).to_json()
    assert {
        "handler",
        "variant",
        "python",
        "env_key",
        "requirements",
        "flash_attn",
        "skipped",
    } <= set(data)
    assert data["requirements"] == ["audio-pkg==1.0", "flash-attn==2.8.0.post2"]
    assert set(data["flash_attn"]) >= {"wheel", "url", "sha256"}


# --- the env key ---------------------------------------------------------------------------


def key_of(
    make_settings: Make, locks_dir: Path, gpu: str = H100, python: str = "3.11", **env: str
) -> str:
    return plan_for(make_settings, locks_dir, "audio", gpu, python, **env).env_key


def test_env_key_is_stable(make_settings: Make, locks_dir: Path) -> None:
    key = key_of(make_settings, locks_dir)
    assert key == key_of(make_settings, locks_dir)
    assert key.startswith("audio-cu126-cp311-") and len(key.rsplit("-", 1)[1]) == 16


def test_env_key_ignores_what_does_not_change_the_bytes(
    make_settings: Make, locks_dir: Path
) -> None:
    # Two Ampere-or-newer GPUs on the same build get the same bytes, so share one env.
    assert key_of(make_settings, locks_dir, A100) == key_of(make_settings, locks_dir, H100)


def test_env_key_changes_with_every_input_that_changes_the_bytes(
    make_settings: Make, locks_dir: Path
) -> None:
    base = key_of(make_settings, locks_dir)
    others = {
        "python": key_of(make_settings, locks_dir, python="3.10"),
        "variant": key_of(make_settings, locks_dir, RTX5090),
        "flash-attn": key_of(make_settings, locks_dir, T4),
    }
    lock = read_lock("audio", "cu126", "3.11", locks_dir)
    lock.path.write_text(lock.text.replace("audio-pkg==1.0", "audio-pkg==1.1"))
    others["lock content"] = key_of(make_settings, locks_dir)
    assert base not in others.values()
    assert len(set(others.values())) == len(others)


def test_env_key_is_shared_by_plans_with_the_same_bytes(
    make_settings: Make, locks_dir: Path
) -> None:
    # Flash-attn left out on a T4 or by policy on an H100: the same packages, one env.
    off = key_of(make_settings, locks_dir, RUNPOD_SLIM_FLASH_ATTN="off")
    assert off == key_of(make_settings, locks_dir, T4)


# --- a custom handler's requirements and the GPU stack ---------------------------------------


def custom_plan(
    make_settings: Make, tmp_path: Path, requirements: str, gpu: str | GpuInfo = A100, **env: str
) -> InstallPlan:
    """A custom handler's plan, against the real stack locks (files only)."""
    (tmp_path / "requirements.txt").write_text(requirements)
    settings = make_settings(
        HANDLER_TYPE="custom",
        RUNPOD_SLIM_CUSTOM_HANDLER="my_worker:handler",
        RUNPOD_SLIM_CUSTOM_DIR=str(tmp_path),
        **env,
    )
    info = parse_gpu_spec(gpu) if isinstance(gpu, str) else gpu
    return plan(custom_profile(settings), info, "3.11", settings)


def test_custom_gpu_stack_smoke_tests_torchvision_and_the_users_distributions(
    make_settings: Make, tmp_path: Path
) -> None:
    result = custom_plan(
        make_settings, tmp_path, "torchvision\npyyaml\n", RUNPOD_SLIM_CUSTOM_GPU_STACK="1"
    )
    assert result.variant == "cu126" and result.flash_attn is not None
    assert result.smoke_imports == ("runpod", "torch", "torchaudio", "torchvision", "flash_attn")
    assert result.smoke_distributions == ("pyyaml",)  # torchvision is the stack's own
    assert "torchvision==0.22.0" in result.requirements
    assert "nvidia-cudnn-cu12==9.5.1.17" in result.requirements
    assert result.env_key.startswith("custom-cu126-cp311-")


def test_custom_without_the_stack_smoke_tests_the_users_distributions(
    make_settings: Make, tmp_path: Path
) -> None:
    result = custom_plan(make_settings, tmp_path, "pyyaml\npillow\n")
    assert result.variant == "none" and result.flash_attn is None
    assert result.smoke_imports == ("runpod",)
    assert result.smoke_distributions == ("pyyaml", "pillow")


def test_custom_conflicting_pins_are_refused_before_anything_else(
    make_settings: Make, tmp_path: Path
) -> None:
    with pytest.raises(PlanError) as info:
        custom_plan(
            make_settings,
            tmp_path,
            "torch==2.6.0\nflash-attn==2.7.4.post1\n",
            RUNPOD_SLIM_CUSTOM_GPU_STACK="1",
        )
    assert "pins torch==2.6.0 and flash-attn==2.7.4.post1, but" in str(info.value)
    assert "installs torch==2.7.0 and flash-attn==2.8.0.post2 (the cu126 build" in str(info.value)


def test_custom_stack_pins_user_takes_theirs_without_flash_attn(
    make_settings: Make, tmp_path: Path
) -> None:
    result = custom_plan(
        make_settings,
        tmp_path,
        "torch==2.6.0\n",
        RUNPOD_SLIM_CUSTOM_GPU_STACK="1",
        RUNPOD_SLIM_CUSTOM_STACK_PINS="user",
    )
    assert result.flash_attn is None
    assert result.smoke_imports == ("runpod",)  # their torch is smoke-tested as theirs
    assert result.smoke_distributions == ("torch",)
    assert [(s.package, s.reason) for s in result.skipped] == [
        (
            "flash-attn",
            "your requirements pin torch==2.6.0 instead of the GPU stack's "
            "(RUNPOD_SLIM_CUSTOM_STACK_PINS=user), and the pinned flash-attn wheel is built "
            "for torch 2.7.0",
        )
    ]
    with pytest.raises(PlanError, match="RUNPOD_SLIM_FLASH_ATTN=required, but flash-attn"):
        custom_plan(
            make_settings,
            tmp_path,
            "torch==2.6.0\n",
            RUNPOD_SLIM_CUSTOM_GPU_STACK="1",
            RUNPOD_SLIM_CUSTOM_STACK_PINS="user",
            RUNPOD_SLIM_FLASH_ATTN="required",
        )
