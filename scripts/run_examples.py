#!/usr/bin/env python3
"""Run a handler's example jobs through the RunPod SDK's local API server and print results.

    python3 scripts/run_examples.py storage [--port 8000]

Starts `python3 handler.py --rp_serve_api` with HANDLER_TYPE set (the bootstrap installs or
finds the handler's env first), waits for it to answer, POSTs each example to /runsync,
prints what came back, and stops the server. Exit status 1 if any example returned an error.

Without a network volume (RUNPOD_SLIM_VOLUME unset and nothing at /runpod-volume), the examples
use <tmp>/runpod-slim-volume as theirs, as the README's first job does, so that the ones that
write to volume:// work on any machine, and the cache there stays warm between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 1800  # a cold start installs the handler's stack first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("handler")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import handlers
    from handlers.harness import local_api

    examples = handlers.load(args.handler).examples
    env = {**os.environ, "HANDLER_TYPE": args.handler}
    env["RUNPOD_SLIM_VOLUME"] = str(volume(env))
    failed = 0
    with local_api(env, start_timeout_s=START_TIMEOUT_S, port=args.port) as api:
        for example in examples:
            result = api.runsync(example)
            output = result.get("output")
            # A streaming handler's output is its list of chunks; an error is one of them.
            parts = output if isinstance(output, list) else [output]
            refused = any(isinstance(part, dict) and "error" in part for part in parts)
            if result.get("status") != "COMPLETED" or refused:
                failed += 1
            print(json.dumps({"input": example, "result": result}, indent=2))
    print(f"{len(examples) - failed} passed, {failed} failed")
    return 1 if failed else 0


def volume(env: dict[str, str]) -> Path:
    """The volume the examples use: the one set or attached, else a local stand-in."""
    from bootstrap.settings import DEFAULT_VOLUME, VOLUME

    given = env.get(VOLUME, "").strip()
    if given or Path(DEFAULT_VOLUME).is_dir():
        return Path(given or DEFAULT_VOLUME)
    local = Path(tempfile.gettempdir()) / "runpod-slim-volume"
    local.mkdir(exist_ok=True)
    print(f"no network volume: using {local} as the volume", file=sys.stderr)
    return local


if __name__ == "__main__":
    sys.exit(main())
