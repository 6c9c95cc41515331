"""The rest of a packed env, hydrated while the worker imports.

A new container's warm start hydrates first what the worker's imports open (bootstrap/packed.py,
split_rest: everything but the Python source of modules the smoke test did not import, stubs
and C headers), activates the env and imports; on an audio env that first part is about a third
of the small files. A child process hydrates the rest meanwhile, at the lowest priority (nice
19), on what CPU the worker's imports leave:

1. the rest's archives are streamed from the volume, checked against the manifest and unpacked
   into <local env>/rest, beside the env's site;
2. moved into the site: a directory the site lacks by one rename, so that it appears whole; a
   file into a directory the site has by one rename, so that none is ever seen half-written;
3. the hydrated marker is written last, and the child exits, releasing the `.hydrating` lock it
   inherited from the worker.

Until then the worker takes no job (ReadyEnv.wait_whole), and an import of a name only the rest
holds (packed.rest_names, in the manifest) waits for it and looks again instead of failing
(RestFinder, last on sys.meta_path); any other miss fails at once, as it would anyway.
A killed child leaves an env without its marker, which the next start on this container
hydrates again; a child that finds the rest damaged sets the env on the volume aside, so that
the next start installs it again. `python3 -m bootstrap.backfill` is that child.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import CacheError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the warm path
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

REST = "rest"  # beside site in the local env, while the rest is unpacked
DAMAGED = 3  # the child's exit status when the rest on the volume is damaged
NICE = 19  # the child's priority: the lowest, as for any background work


class Backfill:
    """The child hydrating an env's rest; wait() returns once the env is whole."""

    def __init__(self, proc: subprocess.Popen[str], key: str, log: Callable[[str], None]) -> None:
        self.key = key
        self._proc = proc
        self._said: list[str] = []
        self._finder: RestFinder | None = None
        self._relay = threading.Thread(
            target=self._forward, args=(log,), name="runpod-slim-backfill-log", daemon=True
        )
        self._relay.start()

    @classmethod
    def start(
        cls,
        *,
        cache_root: Path,
        key: str,
        local_env: Path,
        manifest_sha256: str,
        lock_fd: int,
        environ: dict[str, str],
        log: Callable[[str], None],
    ) -> Backfill:
        """Start the child; it takes over the `.hydrating` lock held on `lock_fd`."""
        root = str(Path(__file__).resolve().parent.parent)
        argv = [
            sys.executable,
            "-I",  # the bootstrap is all it imports; nothing from the env or the user's site
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); from bootstrap.backfill import main; "
            "raise SystemExit(main(sys.argv[2:]))",
            root,
            str(cache_root),
            key,
            str(local_env),
            manifest_sha256,
            str(lock_fd),
        ]
        try:
            proc = subprocess.Popen(
                argv,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                pass_fds=(lock_fd,),
            )
        finally:
            os.close(lock_fd)  # the child holds its own copy: the lock lives as long as it does
        return cls(proc, key, log)

    def _forward(self, log: Callable[[str], None]) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._said.append(line.rstrip("\n"))
            log(self._said[-1])

    def done(self) -> bool:
        return self._proc.poll() is not None

    def settle(self) -> int:
        """Wait for the child; its exit status."""
        code = self._proc.wait()
        self._relay.join()
        if self._finder is not None:
            self._finder.remove()
        return code

    def wait(self) -> None:
        """Return once the env is whole; CacheError (one sentence) when it cannot be."""
        code = self.settle()
        if code == 0:
            return
        if self._said:
            last = self._said[-1].removeprefix("hydrate: ")
        elif code < 0:
            last = f"the process hydrating the rest of env {self.key} was killed (signal {-code})"
        else:
            last = f"the process hydrating the rest of env {self.key} ended with status {code}"
        then = (
            "it was set aside, and the next start installs it again"
            if code == DAMAGED
            else "the next start on this container hydrates it again"
        )
        raise CacheError(f"{last}; {then}")

    def guard_imports(self, site: Path, names: dict[str, str] | None) -> None:
        """Until the rest is in, an import the site cannot satisfy and that may be in the rest
        (`names`, packed.rest_names; None: any) waits for it (RestFinder)."""
        if self._finder is None and not self.done():
            self._finder = RestFinder(self, site, names)
            sys.meta_path.append(self._finder)


class RestFinder:
    """Last on sys.meta_path while the rest is hydrated: what no finder found may be in it.

    An import that misses a name the rest does not hold (an optional dependency that is not
    installed: libraries try dozens while they import) fails at once, as it would anyway.
    """

    def __init__(self, backfill: Backfill, site: Path, names: dict[str, str] | None) -> None:
        self._backfill = backfill
        self._site = os.path.normpath(site)
        self._names = names

    def _may_be_in_rest(self, name: str, path: object) -> bool:
        if self._names is None:
            return True
        last = name.rpartition(".")[2]
        within = self._site + os.sep
        for entry in sys.path if path is None else path:  # type: ignore[attr-defined]
            if not isinstance(entry, str):
                continue
            folder = os.path.normpath(entry)
            if folder == self._site:
                rel = ""
            elif folder.startswith(within):
                rel = folder[len(within) :]
            else:
                continue
            if last in self._names.get(rel, "").split():
                return True
        return False

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        import importlib
        from importlib.machinery import PathFinder

        if not self._may_be_in_rest(name, path):
            return None
        # Waits for the rest (at once if it is in) and takes this finder off sys.meta_path; a
        # failure is raised by wait(), where the worker asks. Looked up again even when the
        # rest was already in: it may have landed after the path finder's directory listing.
        self._backfill.settle()
        importlib.invalidate_caches()
        return PathFinder.find_spec(name, path, target)  # type: ignore[arg-type]

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def merge(source: Path, site: Path) -> int:
    """Move everything under `source` into `site`; how many renames it took.

    A directory `site` lacks is renamed in whole; a file is renamed over (a bytecode file the
    worker's own import may just have written is the same bytecode).
    """
    moved = 0
    with os.scandir(source) as entries:
        for entry in entries:
            target = os.path.join(site, entry.name)
            if entry.is_dir(follow_symlinks=False):
                if not os.path.lexists(target):
                    try:
                        os.rename(entry.path, target)
                        moved += 1
                        continue
                    except OSError:
                        if not os.path.isdir(target):  # not a race with an import's __pycache__
                            raise
                moved += merge(Path(entry.path), Path(target))
            else:
                os.replace(entry.path, target)
                moved += 1
    return moved


def main(argv: list[str]) -> int:
    """The child: hydrate the rest, move it in, mark the env hydrated (see the docstring)."""
    import hashlib
    import json
    import shutil
    import signal

    from . import store
    from .cache import MANIFEST, Layout, set_aside
    from .packed import DamagedEnvError, unpack_rest
    from .settings import FAILPOINT

    # Behind the worker's own imports: the scheduler would otherwise share the cores evenly
    # between them and this child's tar, decompression and the volume's client, and the worker
    # took 0.7 s longer to import (audio, +1 ms; BENCHMARKS.md). Threads and tar inherit it.
    os.nice(NICE)
    cache_root, key, local_env_arg, manifest_sha256, lock_fd = argv
    layout = Layout(Path(cache_root))
    env_dir, local_env = layout.env_dir(key), Path(local_env_arg)
    began = time.perf_counter()

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        raw = (env_dir / MANIFEST).read_bytes()
        if hashlib.sha256(raw).hexdigest() != manifest_sha256:
            say(f"hydrate: env {key} was replaced on the volume while this worker hydrated it")
            return 1
        parts = json.loads(raw)["parts"]
        side = local_env / REST
        archives = unpack_rest(env_dir, parts, side)
        failpoint = os.environ.get(FAILPOINT)
        if failpoint == "after-rest-unpack":
            os.kill(os.getpid(), signal.SIGKILL)
        if failpoint == "hold-rest":  # tests: the rest stays out until they create rest.go
            _hold(local_env / "rest.go")
        moved = merge(side, local_env / "site")
        shutil.rmtree(side)  # what is left: the directories whose entries were moved one by one
    except DamagedEnvError as exc:
        set_aside(layout, env_dir, str(exc), say)
        say(f"hydrate: env {key} on the volume is damaged ({exc})")
        return DAMAGED
    except OSError as exc:
        from .errors import from_os_error

        say(f"hydrate: the rest of env {key} failed: {from_os_error(exc, 'hydrating it')}")
        return 1
    store.mark_hydrated(local_env, key, manifest_sha256)
    store.release_hydrating(local_env, int(lock_fd))
    took = time.perf_counter() - began
    say(f"hydrate: the rest, {archives} archives, moved in by {moved} renames ({took:.1f} s)")
    return 0


def _hold(go: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
