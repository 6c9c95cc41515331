"""Cold install of a handler's stack: the bootstrap vs pip vs bare uv, same pins, same index.

    python3 bench/bench_cold_install.py [--handler audio] [--skip-pip]

Each contender starts from empty caches in its own temporary directory (target and cache on
one filesystem, as on the volume) and installs the same hashed lock from the same index:

  bootstrap  python3 -m bootstrap install: plan, uv install, smoke test (imports the stack in
             a child interpreter), manifest, publish
  uv         uv pip install --target --require-hashes --no-deps (the bootstrap's command)
  uv+import  the same, then the same imports as the smoke test: what a worker pays before
             its first job when it installs with bare uv
  pip        python3 -m pip install --target --require-hashes --no-deps
  bootstrap+import  the bootstrap, then the same imports in a new process: the time to a
             worker's first import (the smoke test left the imported modules' bytecode)

Targets (issue 2): bootstrap at least 3.5x faster than pip, within 1.15x of bare uv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _common import REPO, report, timed

sys.path.insert(0, str(REPO))
from bootstrap.profiles import PROFILES, read_lock
from bootstrap.settings import DEFAULT_INDEX_URL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--handler", default="audio", choices=sorted(PROFILES))
    parser.add_argument("--skip-pip", action="store_true", help="leave out the slow pip run")
    args = parser.parse_args()
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    profile = PROFILES[args.handler]
    variant = "cu126" if profile.torch else "none"
    lock = read_lock(args.handler, variant, python)
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("put uv on PATH (scripts/test.sh installs it into .venv/bin)")
    imports = "; ".join(f"import {m}" for m in profile.imports)
    times: dict[str, float] = {}
    base = Path(os.environ.get("BENCH_TMP", tempfile.gettempdir()))

    def fresh(name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=base))
        return path

    def clean(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    order = ["uv", "bootstrap", "pip"] if not args.skip_pip else ["uv", "bootstrap"]
    for contender in order:
        tmp = fresh(contender)
        env = {
            **os.environ,
            "UV_CACHE_DIR": str(tmp / "uv-cache"),
            "PIP_CACHE_DIR": str(tmp / "pip-cache"),
        }
        try:
            if contender == "bootstrap":
                env.update(
                    HANDLER_TYPE=args.handler,
                    RUNPOD_SLIM_CACHE=str(tmp / "cache"),
                    RUNPOD_SLIM_VOLUME=str(tmp / "no-volume"),
                    PYTHONPATH=str(REPO),
                )
                times["bootstrap"] = timed([sys.executable, "-m", "bootstrap", "install"], env)
                [site] = (tmp / "cache" / "envs").glob("*/site")
                times["bootstrap+import"] = times["bootstrap"] + timed(
                    [
                        sys.executable,
                        "-s",
                        "-c",
                        f"import sys; sys.path.insert(0, {str(site)!r}); {imports}",
                    ],
                    env,
                    cwd=tmp,
                )
            elif contender == "uv":
                site = tmp / "site"
                times["uv"] = timed(
                    [
                        uv,
                        "pip",
                        "install",
                        "--target",
                        str(site),
                        "--python",
                        sys.executable,
                        "--no-config",
                        "--only-binary",
                        ":all:",
                        "--require-hashes",
                        "--no-deps",
                        "--index-url",
                        DEFAULT_INDEX_URL,
                        "-r",
                        str(lock.path),
                    ],
                    env,
                )
                times["uv+import"] = times["uv"] + timed(
                    [
                        sys.executable,
                        "-s",
                        "-c",
                        f"import sys; sys.path.insert(0, {str(site)!r}); {imports}",
                    ],
                    env,
                    cwd=tmp,
                )
            else:
                times["pip"] = timed(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--target",
                        str(tmp / "site"),
                        "--only-binary",
                        ":all:",
                        "--require-hashes",
                        "--no-deps",
                        "--disable-pip-version-check",
                        "--isolated",  # this machine's pip.conf must not add other sources
                        *(
                            ["--cert", os.environ["SSL_CERT_FILE"]]
                            if os.environ.get("SSL_CERT_FILE")
                            else []
                        ),
                        "--index-url",
                        DEFAULT_INDEX_URL,
                        "-r",
                        str(lock.path),
                    ],
                    env,
                )
        finally:
            clean(tmp)
    result: dict[str, object] = {
        "command": f"python3 bench/bench_cold_install.py --handler {args.handler}",
        "lock": lock.path.name,
        "packages": len(lock.requirements),
        "order": order,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "bootstrap_vs_uv": round(times["bootstrap"] / times["uv"], 2),
        "bootstrap_vs_uv_plus_import": round(times["bootstrap"] / times["uv+import"], 2),
        "to_first_import_bootstrap_vs_uv": round(times["bootstrap+import"] / times["uv+import"], 2),
        "targets": {"pip_over_bootstrap_min": 3.5, "bootstrap_over_uv_max": 1.15},
    }
    if "pip" in times:
        result["pip_over_bootstrap"] = round(times["pip"] / times["bootstrap"], 2)
    report(f"cold_install_{args.handler}", result)


if __name__ == "__main__":
    main()
