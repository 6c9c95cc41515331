"""A ready env: where it is, what it holds, and how a process or a subprocess uses it."""

from __future__ import annotations

import contextlib
import os
import site
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .cache import LEASE_HEARTBEAT_S, lease_path, touch_lease
from .errors import BootstrapError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from typing import Any

    from .backfill import Backfill


@dataclass(frozen=True)
class ReadyEnv:
    """A published, complete env for one key."""

    key: str
    path: Path
    manifest: Mapping[str, Any]
    cold: bool  # True when this start installed it
    home: Path | None = None  # its dir in the cache on the volume, when `path` is a local copy
    # The rest of a packed env, still being hydrated (bootstrap/backfill.py): see wait_whole.
    backfill: Backfill | None = field(default=None, compare=False, repr=False)

    @property
    def site_dir(self) -> Path:
        return self.path / "site"

    def activate(self) -> None:
        """Put the env first on sys.path (its .pth files processed), before any handler import."""
        want = str(self.manifest.get("python", ""))
        have = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if want and want != have:
            raise BootstrapError(
                f"env {self.key} was built for Python {want}, this is Python {have}; "
                f"its compiled packages would fail to load"
            )
        if self.backfill is not None:
            from .packed import names_in_rest

            self.backfill.guard_imports(self.site_dir, names_in_rest(self.manifest["parts"]))
        target = str(self.site_dir)
        if sys.path and sys.path[0] == target:
            return
        site.addsitedir(target)
        sys.path.remove(target)
        sys.path.insert(0, target)

    def wait_whole(self) -> None:
        """Return once every file of the env is in place: before a worker takes its first job.

        At once, but on a container that hydrates a packed env's rest while the worker imports
        (bootstrap/backfill.py); raises CacheError when the rest could not be hydrated.
        """
        if self.backfill is not None:
            self.backfill.wait()

    def isolate(self) -> None:
        """Take the machine's own site-packages off sys.path: the worker runs on its env alone.

        A package missing from the env must fail, not be found on the host (a stale boto3, or
        an IPython that tqdm then imports for 0.4 s at every start). PYTHONPATH entries stay:
        they are asked for. Only the worker process does this, never a test that activates an
        env beside its own tools.
        """
        machine = {*site.getsitepackages(), site.getusersitepackages()}
        sys.path[:] = [p for p in sys.path if p not in machine]

    def subprocess_environ(self, base: Mapping[str, str]) -> dict[str, str]:
        """An environment in which a child `python` sees the same packages."""
        env = dict(base)
        paths = [str(self.site_dir)] + ([base["PYTHONPATH"]] if base.get("PYTHONPATH") else [])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        bin_dir = self.site_dir / "bin"
        env["PATH"] = os.pathsep.join([str(bin_dir), base.get("PATH", os.defpath)])
        return env

    def hold(self) -> None:
        """Mark the env in use for as long as this process runs, so prune leaves it alone.

        The lease goes when the process exits; one killed leaves it to go stale, and prune
        removes stale leases (keeping their last-use time).
        """
        import atexit
        import threading  # only a serving worker holds its env

        home = self.home or self.path
        try:
            touch_lease(home)
        except FileNotFoundError:
            pass  # a packed env this worker installed, still being published: the beat leases it
        except OSError:
            return  # a read-only cache (a baked image's) is never pruned under a worker
        lease = lease_path(home)
        done = threading.Event()

        def beat() -> None:
            while not done.wait(LEASE_HEARTBEAT_S):
                # If the volume went away, the worker's own I/O will say so.
                with contextlib.suppress(OSError):
                    touch_lease(home)

        def release() -> None:
            done.set()
            with contextlib.suppress(OSError):
                lease.unlink()

        atexit.register(release)
        threading.Thread(target=beat, name="runpod-slim-lease", daemon=True).start()
