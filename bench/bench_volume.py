"""Starts with the cache on a real MooseFS volume, against the cache on local disk, in one run.

    python3 bench/bench_volume.py [--handler storage --handler audio] [--latency 0 1 2]
                                  [--runs 3] [--cold-latency 1] [--no-cold-in-place]

Per handler:
- cold first start (`python3 -m bootstrap install`, empty caches, packages from the index, to
  its `state=ready` line): into local disk (env in place), into an empty MooseFS volume as
  this worker does it (installed on container disk, ready, then packed onto the volume in the
  background: the time until that is published is reported too), and into MooseFS as it was
  done before (env installed in place on the volume); with the bytes and files each leaves on
  the volume;
- warm start to "ready" (a new process: the bootstrap's warm path, what the worker imports
  before its first job, and the env whole: what a worker waits for before it takes a job), as
  a new worker node sees it: a fresh mount, the page cache dropped, an empty container disk;
  for the cache on local disk, the env in place on MooseFS, and the packed env, at each added
  round-trip latency; with when the imports were done, and the CPU seconds of the worker and
  of the volume's processes (which share this machine's two cores). The runs go round by
  round (each kind once per round), so that a drift in the machine's speed weighs on all.

The volume is tests/support/moosefs.py's cluster (master and chunkserver in network
namespaces, a delaying proxy for the latency), mounted twice: node 0 installs, node 1 starts
warm. The latency each run really saw is measured (a lookup's round trip) and reported.
Needs root (namespaces, FUSE, dropping the page cache) and Debian's moosefs packages
(scripts/install-test-deps.sh). Results: bench/results/volume_<handlers>.json.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, report, run_timed

sys.path.insert(0, str(REPO))
from tests.support.moosefs import MooseFS, drop_page_cache, moosefs_cluster

IMPORTS = {
    "audio": ("torch", "torchaudio", "ctranslate2", "faster_whisper", "whisperx", "runpod"),
    "storage": ("boto3", "runpod"),
    "tts": ("soundfile", "piper_onnx", "runpod"),
    "video": ("av", "imageio_ffmpeg", "runpod"),
}
# As handler.py starts: the env (on a new container, its rest may still be hydrating), the
# imports, then wait_whole(), after which the worker would take its first job: "ready". The
# process's exit is not timed (with libraries linked to the volume, unloading them faults in
# pages no import touched: 2 to 3 s at 1 ms, which no worker that serves ever pays).
WARM = """
import os, sys, time
from bootstrap import ensure, load_settings
env = ensure(load_settings(os.environ), log=lambda line: print(line, file=sys.stderr),
             whole=False)
for name in sys.argv[1:]:
    __import__(name)
print("imports-done", time.perf_counter(), flush=True)
env.wait_whole()
print("ready", time.perf_counter(), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--handler", action="append", choices=sorted(IMPORTS))
    parser.add_argument("--latency", action="append", type=float, help="added RTT, ms")
    parser.add_argument("--cold-latency", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--no-cold-in-place", action="store_true", help="skip the old in-place cold install"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()
    handlers = args.handler or ["storage", "audio"]
    latencies = args.latency or [0.0, 1.0, 2.0]
    results = {}
    for handler in handlers:
        with tempfile.TemporaryDirectory(prefix="bench-volume-", dir=args.workdir) as tmp:
            results[handler] = bench_handler(
                handler, Path(tmp), latencies, args.cold_latency, args.runs, args.no_cold_in_place
            )
    report(
        f"volume_{'_'.join(handlers)}",
        {
            "command": "python3 bench/bench_volume.py "
            + " ".join(f"--handler {h}" for h in handlers)
            + "".join(f" --latency {lat:g}" for lat in latencies)
            + f" --cold-latency {args.cold_latency:g} --runs {args.runs}"
            + (" --no-cold-in-place" if args.no_cold_in_place else ""),
            "results": results,
        },
    )


def bench_handler(
    handler: str,
    tmp: Path,
    latencies: list[float],
    cold_latency: float,
    runs: int,
    skip_cold_in_place: bool,
) -> dict[str, object]:
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_SLIM_", "UV_"))},
        "HANDLER_TYPE": handler,
        "RUNPOD_SLIM_VOLUME": str(tmp / "no-volume"),
    }

    def node(cache: Path, store: str, local: str) -> dict[str, str]:
        """A worker's environment: its cache, how envs are kept, its container disk."""
        return {
            **base,
            "RUNPOD_SLIM_CACHE": str(cache),
            "RUNPOD_SLIM_ENV_STORE": store,
            "RUNPOD_SLIM_LOCAL_DIR": str(tmp / local),
        }

    local_cache = tmp / "local-cache"
    local_env = node(local_cache, "in-place", "local-a")
    out: dict[str, object] = {}
    # Not timed: the first download from the index also fills whatever caches lie between
    # this machine and the index, which would favour every install after the first.
    install(node(tmp / "warm-up", "in-place", "local-a"))
    shutil.rmtree(tmp / "warm-up")
    shutil.rmtree(tmp / "local-a", ignore_errors=True)
    ready, _ = install(local_env)
    cold: dict[str, object] = {"local_disk_s": round(ready, 2)}
    out["local_env"] = footprint(local_cache)
    with moosefs_cluster(tmp, latency_ms=cold_latency, via_proxy=True) as fs:
        node0, node1 = fs.mounts
        cold["rtt_ms"] = round(fs.lookup_rtt_us(0) / 1000, 2)
        ready, published = install(node(node0 / "packed", "packed", "local-b"))
        cold["moosefs_packed_s"] = round(ready, 2)
        cold["moosefs_packed_published_s"] = round(published, 2)
        cold["packed_on_volume"] = footprint(node0 / "packed")
        in_place_root = node0 / "in-place"
        if not skip_cold_in_place:
            cold["moosefs_in_place_s"] = round(
                install(node(in_place_root, "in-place", "local-c"))[0], 2
            )
            cold["in_place_on_volume"] = footprint(in_place_root)
        else:
            # The same env in place on the volume, copied there (quickly) for the warm runs.
            fs.set_latency(0.0)
            shutil.copytree(local_cache / "envs", in_place_root / "envs", symlinks=True)
        cold["packed_over_local"] = ratio(cold["moosefs_packed_s"], cold["local_disk_s"])
        out["cold"] = cold

        # Round by round, each kind once per round: the machine's speed drifts (other tenants
        # of its host), and a drift then weighs on every kind alike, not on one.
        seen: dict[str, dict[str, list[float]]] = {}
        for _round in range(runs):
            warm_run(seen.setdefault("local_disk", {}), None, None, local_env, handler)
            for latency in latencies:
                fs.set_latency(latency)
                warm_run(
                    seen.setdefault(f"{latency:g}ms in place", {}),
                    fs,
                    1,
                    node(node1 / "in-place", "in-place", "local-d"),
                    handler,
                )
                warm_run(
                    seen.setdefault(f"{latency:g}ms packed", {}),
                    fs,
                    1,
                    node(node1 / "packed", "packed", "local-e"),
                    handler,
                    fresh_local=tmp / "local-e",
                )
        local_s = summary(seen["local_disk"])
        warm: dict[str, object] = {"local_disk": local_s}
        for latency in latencies:
            in_place = summary(seen[f"{latency:g}ms in place"])
            packed = summary(seen[f"{latency:g}ms packed"])
            warm[f"latency_{latency:g}ms"] = {
                "in_place": in_place,
                "packed": packed,
                "packed_over_local": ratio(packed["median_s"], local_s["median_s"]),
                "in_place_over_packed": ratio(in_place["median_s"], packed["median_s"]),
            }
        out["warm_to_ready"] = warm
    return out


def install(env: dict[str, str]) -> tuple[float, float]:
    """(seconds to ready, seconds to the process's end): a packed env is published after.

    Each starts on a machine at rest: the gigabytes the install before it wrote are written
    back first (in a scratch run they made the next install's download and install take
    25.5 s instead of 17.8 s: whichever kind ran second lost), and the page cache is empty,
    as on a new node.
    """
    os.sync()
    if not drop_page_cache():
        raise SystemExit("cannot drop the page cache (needs root): the figures would lie")
    took, run = run_timed([sys.executable, "-m", "bootstrap", "install"], env)
    ready = re.search(r"state=ready env=\S+ cold in ([0-9.]+) s", run.stderr)
    if ready is None:
        raise SystemExit(f"no cold ready line in the install's log:\n{run.stderr[-3000:]}")
    return float(ready[1]), took


def warm_run(
    seen: dict[str, list[float]],
    fs: MooseFS | None,
    node: int | None,
    env: dict[str, str],
    handler: str,
    fresh_local: Path | None = None,
) -> None:
    """One run from process start to ready (imports done, env whole), as a new node: a fresh
    mount, a cold page cache, an empty container disk; its figures appended to `seen`. With
    the CPU seconds each side used: the worker (with its children) and the volume's own
    processes, which share the two cores here but run on other machines on RunPod (but for
    the client, mfsmount, on the host)."""
    if fresh_local is not None:
        shutil.rmtree(fresh_local, ignore_errors=True)  # a new container's empty disk
    if fs is not None and node is not None:
        fs.remount(node)
        seen.setdefault("rtt_ms", []).append(fs.lookup_rtt_us(node) / 1000)
    if not drop_page_cache():
        raise SystemExit("cannot drop the page cache (needs root): the figures would lie")
    servers = dict(fs.pids) if fs is not None else {}
    before = {name: cpu_seconds(pid) for name, pid in servers.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    _took, run = run_timed([sys.executable, "-c", WARM, *IMPORTS[handler]], env)
    # perf_counter is the system's monotonic clock: the same in both processes.
    for mark in ("imports-done", "ready"):
        at = re.search(rf"^{mark} ([0-9.]+)$", run.stdout, re.MULTILINE)
        if at is None:
            raise SystemExit(f"the warm run printed no {mark} line:\n{run.stdout[-2000:]}")
        seen.setdefault(mark, []).append(float(at[1]) - began)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seen.setdefault("worker_cpu_s", []).append(
        after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    )
    if servers:
        used = {name: cpu_seconds(pid) - before[name] for name, pid in servers.items()}
        client = sum(v for name, v in used.items() if name.startswith("mount"))
        seen.setdefault("volume_client_cpu_s", []).append(client)
        seen.setdefault("volume_servers_cpu_s", []).append(sum(used.values()) - client)
    for name, pattern in (
        ("hydrate_s", r"hydrate: .*\(([0-9.]+) (ms|s)\)$"),
        ("rest_s", r"hydrate: the rest, .*\(([0-9.]+) (s)\)$"),
    ):
        found = re.search(pattern, run.stderr, re.MULTILINE)
        if found:
            took = float(found[1]) / (1000 if found[2] == "ms" else 1)
            seen.setdefault(name, []).append(took)


def summary(seen: dict[str, list[float]]) -> dict[str, object]:
    """Median to ready, every run's, and the median of each other figure."""
    result: dict[str, object] = {
        "median_s": round(statistics.median(seen["ready"]), 2),
        "runs_s": [round(t, 2) for t in seen["ready"]],
    }
    for name, values in seen.items():
        if name != "ready":
            result[f"{name.replace('-', '_')}_median"] = round(statistics.median(values), 2)
    return result


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def footprint(root: Path) -> dict[str, int]:
    """Files and bytes under a cache root (hard links counted once)."""
    files = size = 0
    seen: set[tuple[int, int]] = set()
    for folder, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            files += 1
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                size += st.st_size
    return {"files": files, "mb": round(size / 1e6)}


def ratio(a: object, b: object) -> float:
    return round(float(str(a)) / float(str(b)), 2)


if __name__ == "__main__":
    main()
