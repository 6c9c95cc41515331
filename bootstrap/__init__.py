"""runpod-slim's bootstrap: detect the GPU, plan, install into the cache, activate.

Standard library only: it runs on a bare Python 3.10 before anything is installed.
Nothing runs at import.
"""

from .ensure import ensure, make_plan
from .env import ReadyEnv
from .errors import BootstrapError
from .settings import Settings, load_settings

__all__ = ["BootstrapError", "ReadyEnv", "Settings", "ensure", "load_settings", "make_plan"]
