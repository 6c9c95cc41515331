"""HANDLER_TYPE=custom: a user's existing RunPod function, served unchanged.

The bootstrap has installed the user's requirements into their own cached env; this module
only finds `module:function` in the user's directory. The function goes to the SDK as it is
(sync, async, generator or async generator), so its inputs, outputs and errors are exactly
what they were in the user's own image. If it cannot be loaded, the worker still starts and
every job reports why: a crash loop would hide the reason from the caller.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Callable
from typing import Any

from bootstrap.settings import CustomHandler


def load_function(custom: CustomHandler) -> tuple[Callable[..., Any], str | None]:
    """The user's function, or a stand-in that reports the load failure on every job."""
    module_name, _, function_name = custom.target.partition(":")
    if str(custom.directory) not in sys.path:
        sys.path.insert(0, str(custom.directory))
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name)
        if not callable(function):
            raise TypeError(f"{custom.target} is a {type(function).__name__}, not a function")
    except Exception as exc:
        error = (
            f"custom handler {custom.target} could not be loaded from {custom.directory}: "
            f"{type(exc).__name__}: {exc}"
        )
        detail = traceback.format_exc()

        def failed(job: dict[str, Any]) -> dict[str, Any]:
            return {"error": error}

        return failed, f"{error}\n{detail}"
    return function, None


def describe(function: Callable[..., Any]) -> str:
    """How the SDK will call it, for the start log."""
    if inspect.isasyncgenfunction(function):
        return "async generator (streams)"
    if inspect.isgeneratorfunction(function):
        return "generator (streams)"
    if inspect.iscoroutinefunction(function):
        return "async function"
    return "function"
