"""`import runpod` at a fraction of its own cost, without touching the SDK's files.

runpod 1.12's import spends about 1.2 s of a warm worker's start on one line:
`runpod.serverless.utils.rp_debugger` calls `cpuinfo.get_cpu_info()` at import, and py-cpuinfo
answers by starting a second Python interpreter to run CPUID in it. The SDK only puts the
processor's name into the debug report that `RUNPOD_DEBUG` asks for. A further ~100 ms goes to
modules only its command-line tool uses (paramiko, invoke and tomlkit, reached through
`runpod.http_client -> runpod.cli...`).

So, for the duration of that one import:
- `cpuinfo.get_cpu_info` answers from /proc/cpuinfo (what the subprocess would find there), and
  the real function is put back right after, for anyone who calls it later;
- the CLI-only modules are stand-ins that import the real module on first attribute access and
  forward to it, so a user's code that uses paramiko still gets paramiko. (importlib's own
  LazyLoader does not survive a later `import paramiko` statement: the import system reads the
  module's `__spec__`, which is an attribute access, and that loads it.)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# Imported by the SDK only for its CLI (`runpod ssh`, `runpod config`); never used by a worker.
CLI_ONLY_MODULES = ("paramiko", "invoke", "tomlkit")


def import_runpod() -> ModuleType:
    """The runpod package, imported with the shortcuts this module's docstring explains."""
    if "runpod" in sys.modules:
        return sys.modules["runpod"]
    for name in CLI_ONLY_MODULES:
        _register_lazily(name)
    restore = _answer_cpuinfo_cheaply()
    try:
        import runpod
    finally:
        restore()
    module: ModuleType = runpod
    return module


def processor_name(cpuinfo_text: str | None = None) -> str:
    """The CPU's model name as /proc/cpuinfo gives it (what py-cpuinfo's brand_raw holds)."""
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return "Unable to get processor info."
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Processor", "cpu model"):
            return value.strip()
    return "Unable to get processor info."


class _Deferred(ModuleType):
    """A module that becomes the real one when something first reads an attribute of it."""

    def __getattr__(self, attr: str) -> Any:  # called only for names the stand-in lacks
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        return getattr(real, attr)


def _register_lazily(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return  # not installed: the SDK's own import will say so, as it would have
    stand_in = _Deferred(name)
    stand_in.__spec__ = None  # nothing to lock on: the import system returns it as is
    sys.modules[name] = stand_in


def _answer_cpuinfo_cheaply() -> Any:
    try:
        import cpuinfo  # type: ignore[import-untyped]
    except ImportError:
        return lambda: None
    real = cpuinfo.get_cpu_info

    def from_proc() -> dict[str, str]:
        return {"brand_raw": processor_name()}

    cpuinfo.get_cpu_info = from_proc

    def restore() -> None:
        cpuinfo.get_cpu_info = real

    return restore
