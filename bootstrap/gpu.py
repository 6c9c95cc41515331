"""What GPU this worker has, read through NVML (the nvidia-ml-py package, module `pynvml`).

No NVML library, no driver, or no device is a normal answer: a `GpuInfo` with no devices and
the reason. The `nvml` argument of `detect_gpu` is the module itself, so tests pass a
hand-written stand-in for the one boundary that cannot exist on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

from .errors import SettingsError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from typing import Any

# Driver version -> newest CUDA it supports (CUDA toolkit release notes, table 3).
_DRIVER_CUDA = (
    ((580, 65, 6), (13, 0)),
    ((575, 51, 3), (12, 9)),
    ((570, 26, 0), (12, 8)),
    ((560, 28, 3), (12, 6)),
    ((555, 42, 2), (12, 5)),
    ((550, 54, 14), (12, 4)),
    ((545, 23, 6), (12, 3)),
    ((535, 54, 3), (12, 2)),
    ((530, 30, 2), (12, 1)),
    ((525, 60, 13), (12, 0)),
    ((520, 61, 5), (11, 8)),
    ((515, 43, 4), (11, 7)),
    ((510, 39, 1), (11, 6)),
    ((495, 29, 5), (11, 5)),
    ((470, 42, 1), (11, 4)),
    ((465, 19, 1), (11, 3)),
    ((460, 27, 3), (11, 2)),
    ((455, 23, 4), (11, 1)),
    ((450, 36, 6), (11, 0)),
)


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as NVML reports it."""

    index: int
    name: str
    uuid: str
    memory_bytes: int
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class GpuInfo:
    """The GPUs this worker may use; `devices` is empty when it has none."""

    devices: tuple[GpuDevice, ...] = ()
    driver_version: str | None = None
    cuda_driver_version: tuple[int, int] | None = None
    source: str = "nvml"  # "nvml", "spec" (planned for a GPU that is not here), or "none"
    reason: str = ""  # why there is no GPU, when there is none

    @property
    def present(self) -> bool:
        return bool(self.devices)

    @property
    def name(self) -> str:
        return self.devices[0].name if self.devices else "no GPU"

    @property
    def min_capability(self) -> tuple[int, int] | None:
        """The oldest architecture among the devices: what every kernel must run on."""
        return min(d.compute_capability for d in self.devices) if self.devices else None

    @property
    def max_capability(self) -> tuple[int, int] | None:
        return max(d.compute_capability for d in self.devices) if self.devices else None

    def describe(self) -> str:
        """One line for the start log."""
        if not self.devices:
            return f"no GPU ({self.reason})" if self.reason else "no GPU"
        major, minor = min(d.compute_capability for d in self.devices)
        names = " + ".join(sorted({d.name for d in self.devices}))
        return (
            f"{len(self.devices)} x {names}, compute capability {major}.{minor}, "
            f"driver {self.driver_version}, CUDA <= {format_cuda(self.cuda_driver_version)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "source": self.source,
            "reason": self.reason or None,
            "count": len(self.devices),
            "driver_version": self.driver_version,
            "cuda_driver_version": format_cuda(self.cuda_driver_version),
            "devices": [
                {
                    "index": d.index,
                    "name": d.name,
                    "uuid": d.uuid,
                    "memory_bytes": d.memory_bytes,
                    "compute_capability": f"{d.compute_capability[0]}.{d.compute_capability[1]}",
                }
                for d in self.devices
            ],
        }


def format_cuda(version: tuple[int, int] | None) -> str | None:
    return f"{version[0]}.{version[1]}" if version else None


def parse_driver(version: str) -> tuple[int, ...]:
    """'550.54.15' -> (550, 54, 15), '570.26' -> (570, 26, 0); unparsable sorts lowest."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]]
    return tuple(parts + [0] * (3 - len(parts))) if parts else (0, 0, 0)


def cuda_for_driver(driver_version: str) -> tuple[int, int] | None:
    """The newest CUDA a Linux driver supports, from NVIDIA's published table."""
    driver = parse_driver(driver_version)
    for minimum, cuda in _DRIVER_CUDA:
        if driver >= minimum:
            return cuda
    return None


def parse_gpu_spec(spec: str, *, variable: str = "--gpu") -> GpuInfo:
    """'NVIDIA H100 80GB HBM3:9.0:550.54.15' -> a GpuInfo for planning without that GPU."""
    match = re.fullmatch(
        r"\s*(?P<name>[^:]+):(?P<major>\d+)\.(?P<minor>\d+):(?P<driver>[\d.]+)\s*", spec
    )
    if not match:
        raise SettingsError(
            variable,
            spec,
            "auto, none, or NAME:MAJOR.MINOR:DRIVER such as 'NVIDIA H100 80GB HBM3:9.0:550.54.15'",
        )
    driver = match["driver"]
    device = GpuDevice(
        index=0,
        name=match["name"].strip(),
        uuid="GPU-spec",
        memory_bytes=0,
        compute_capability=(int(match["major"]), int(match["minor"])),
    )
    return GpuInfo((device,), driver, cuda_for_driver(driver), source="spec")


def no_gpu(reason: str) -> GpuInfo:
    return GpuInfo(source="none", reason=reason)


def detect_gpu(nvml: ModuleType | Any | None, environ: Mapping[str, str] | None = None) -> GpuInfo:
    """Ask NVML for the devices; `nvml` is the pynvml module, or None when it is not available.

    NVML numbers devices without regard to CUDA_VISIBLE_DEVICES, so that variable, when set,
    is applied here: the plan must fit the GPUs this worker will actually use.
    """
    if nvml is None:
        return no_gpu("NVML library not found")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # pynvml raises NVMLError subclasses built at run time
        return no_gpu(f"NVML unavailable: {_nvml_reason(exc)}")
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = _cuda_driver_version(nvml, driver)
        devices = [_device(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception as exc:
        return no_gpu(f"NVML query failed: {_nvml_reason(exc)}")
    finally:
        # Shutting down a half-initialised NVML has nothing left to release.
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
    visible = _visible(devices, (environ or {}).get("CUDA_VISIBLE_DEVICES"))
    if not visible:
        return no_gpu(
            "NVML found no device" if not devices else "CUDA_VISIBLE_DEVICES hides every GPU"
        )
    return GpuInfo(tuple(visible), driver, cuda, source="nvml")


def _device(nvml: Any, index: int) -> GpuDevice:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    return GpuDevice(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        memory_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
        compute_capability=(int(major), int(minor)),
    )


def _cuda_driver_version(nvml: Any, driver: str) -> tuple[int, int] | None:
    try:
        raw = int(nvml.nvmlSystemGetCudaDriverVersion_v2())
    except Exception:
        return cuda_for_driver(driver)
    return (raw // 1000, raw % 1000 // 10)


def _visible(devices: list[GpuDevice], selector: str | None) -> list[GpuDevice]:
    if selector is None:
        return devices
    chosen: list[GpuDevice] = []
    for item in (s.strip() for s in selector.split(",")):
        if not item:
            continue
        if item.isdigit():
            found = [d for d in devices if d.index == int(item)]
        else:
            found = [d for d in devices if d.uuid.startswith(item)]
        if not found:
            break  # CUDA stops at the first invalid entry
        chosen.extend(d for d in found if d not in chosen)
    return chosen


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc)
    return f"{name}: {text}" if text and text != name else name


def nvml_library_loadable() -> bool:
    """True when the driver's NVML library can be loaded (what pynvml itself would load)."""
    import ctypes  # only here: it costs the warm path's import time otherwise

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True
