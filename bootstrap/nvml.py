"""How pynvml is available before anything is installed.

nvidia-ml-py is one pure-Python module in a 49 KB wheel. A pure wheel is a zip that Python can
import from directly, so the bootstrap never installs it: it adds the wheel to sys.path. The
wheel comes from, in order: an installed pynvml; the image's wheelhouse (baked, no round trip);
the cache; the package index; each wheel is checked against the sha256 pinned here before use.
It is fetched only when the driver's NVML library is present, so a CPU machine never waits on
the network to learn it has no GPU.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from .cache import Layout
from .errors import BootstrapError
from .gpu import nvml_library_loadable
from .settings import Settings

NVML_WHEEL = "nvidia_ml_py-13.580.82-py3-none-any.whl"
NVML_SHA256 = "4361db337b0c551e2d101936dae2e9a60f957af26818e8c0c3a1f32b8db8d0a7"


def load_pynvml(
    settings: Settings,
    layout: Layout,
    *,
    log: Callable[[str], None],
    library_loadable: Callable[[], bool] = nvml_library_loadable,
) -> ModuleType | None:
    """The pynvml module, or None when this machine has no NVML library (no GPU driver)."""
    if importlib.util.find_spec("pynvml") is not None:
        return importlib.import_module("pynvml")
    if not library_loadable():
        return None
    cached = layout.wheels / NVML_SHA256[:16] / NVML_WHEEL
    for wheel in (settings.wheelhouse / NVML_WHEEL, cached):
        if wheel.is_file():
            # Code that runs at every start: only the pinned bytes, wherever they were found.
            if _sha256_of(wheel) == NVML_SHA256:
                return _import_from(wheel)
            log(
                f"nvml: {wheel} is not the pinned nvidia-ml-py wheel (its sha256 differs); not used"
            )
    if settings.offline:
        raise BootstrapError(
            "the NVIDIA driver is present but pynvml is not in the cache or the wheelhouse, "
            "and RUNPOD_SLIM_OFFLINE is set: unset it once, or bake the wheel into the image"
        )
    from .fetch import download, index_file_url  # only on a GPU machine's first start

    url = index_file_url(
        settings.index_url, "nvidia-ml-py", NVML_WHEEL, ca_bundle=settings.ca_bundle
    )
    wheel = download(
        url, cached, NVML_SHA256, ca_bundle=settings.ca_bundle, retries=settings.retries, log=log
    )
    return _import_from(wheel)


def _sha256_of(path: Path) -> str:
    # hashlib here, not fetch.sha256_of: fetch (ssl, urllib) stays out of a warm start.
    return hashlib.sha256(path.read_bytes()).hexdigest()  # 49 KB


def _import_from(wheel: Path) -> ModuleType:
    sys.path.append(str(wheel))
    return importlib.import_module("pynvml")
