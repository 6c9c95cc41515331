"""GPU detection through NVML, with a hand-written stand-in for the pynvml module.

NVML on a GPU cannot exist on this machine: the stand-in fakes exactly that boundary (the
module's functions and its errors), and everything above it is the real code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bootstrap.errors import SettingsError
from bootstrap.gpu import cuda_for_driver, detect_gpu, parse_gpu_spec


class NVMLError_LibraryNotFound(Exception):
    pass


class NVMLError_DriverNotLoaded(Exception):
    pass


@dataclass
class Memory:
    total: int


@dataclass
class FakeNvml:
    """The subset of pynvml that detect_gpu uses, answering like a real machine would."""

    devices: list[tuple[str, str, int, tuple[int, int]]] = field(default_factory=list)
    driver: str = "550.127.05"
    cuda: int = 12040
    init_error: Exception | None = None
    shutdowns: int = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return self.devices[handle][0].encode()  # older pynvml returns bytes

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.devices[handle][1]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Memory:
        return Memory(self.devices[handle][2])

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        return self.devices[handle][3]


H100 = ("NVIDIA H100 80GB HBM3", "GPU-aaaa-1111", 85_899_345_920, (9, 0))
T4 = ("Tesla T4", "GPU-bbbb-2222", 16_106_127_360, (7, 5))


def test_no_module_means_no_gpu() -> None:
    info = detect_gpu(None)
    assert not info.present
    assert info.describe() == "no GPU (NVML library not found)"


@pytest.mark.parametrize("error", [NVMLError_LibraryNotFound(), NVMLError_DriverNotLoaded()])
def test_nvml_errors_mean_no_gpu_with_the_reason(error: Exception) -> None:
    info = detect_gpu(FakeNvml(init_error=error))
    assert not info.present
    assert info.reason == f"NVML unavailable: {type(error).__name__}"


def test_one_h100() -> None:
    nvml = FakeNvml(devices=[H100])
    info = detect_gpu(nvml)
    assert info.present and info.source == "nvml"
    assert info.devices[0].name == "NVIDIA H100 80GB HBM3"
    assert info.devices[0].memory_bytes == 85_899_345_920
    assert info.min_capability == (9, 0)
    assert info.driver_version == "550.127.05" and info.cuda_driver_version == (12, 4)
    assert info.describe() == (
        "1 x NVIDIA H100 80GB HBM3, compute capability 9.0, driver 550.127.05, CUDA <= 12.4"
    )
    assert nvml.shutdowns == 1
    assert info.to_json()["devices"][0]["compute_capability"] == "9.0"


def test_cuda_visible_devices_is_applied() -> None:
    nvml = FakeNvml(devices=[H100, T4])
    assert detect_gpu(nvml, {"CUDA_VISIBLE_DEVICES": "1"}).min_capability == (7, 5)
    assert [d.index for d in detect_gpu(nvml, {"CUDA_VISIBLE_DEVICES": "GPU-aaaa"}).devices] == [0]
    hidden = detect_gpu(nvml, {"CUDA_VISIBLE_DEVICES": ""})
    assert not hidden.present and hidden.reason == "CUDA_VISIBLE_DEVICES hides every GPU"
    assert detect_gpu(nvml).min_capability == (7, 5)


def test_zero_devices() -> None:
    assert detect_gpu(FakeNvml()).reason == "NVML found no device"


def test_driver_table() -> None:
    assert cuda_for_driver("560.28.03") == (12, 6)
    assert cuda_for_driver("570.26") == (12, 8)
    assert cuda_for_driver("550.54.15") == (12, 4)
    assert cuda_for_driver("525.60.13") == (12, 0)
    assert cuda_for_driver("400.1") is None


def test_gpu_spec() -> None:
    info = parse_gpu_spec("NVIDIA H100 80GB HBM3:9.0:550.54.15")
    assert info.source == "spec" and info.name == "NVIDIA H100 80GB HBM3"
    assert info.min_capability == (9, 0) and info.cuda_driver_version == (12, 4)
    with pytest.raises(SettingsError, match="--gpu='H100:9:550' is not valid"):
        parse_gpu_spec("H100:9:550")
