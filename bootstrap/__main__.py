"""python3 -m bootstrap detect|plan|install|doctor|prune

    detect  [--json]                              what GPU NVML sees
    plan    --handler H [--gpu G] [--python X.Y] [--json]
                                                  what a start would install, without a GPU
                                                  (G: auto, none, or "NAME:MAJOR.MINOR:DRIVER")
    install --handler H [--cache-dir DIR] [--gpu G] [--json]
                                                  install (or find) the env; prints its path
    doctor  [--json]                              GPU, cache, envs, and what a start would do
    prune   [--keep N] [--dry-run]                remove all but the N most recently used envs
    catalog [--handlers | --locks | --check-locks [--locks-dir DIR]] [--json]
                                                  what this build offers (bootstrap/catalog.py):
                                                  handler names, the locks it needs (one
                                                  "ENV VARIANT SOURCE REQUIREMENTS" a line; SOURCE
                                                  is index or torch), or which of them are missing

Exit status: 0 on success, 2 for bad arguments or settings, 1 for any other refusal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import catalog
from .cache import Layout
from .ensure import detect, ensure, make_plan
from .errors import BootstrapError, SettingsError, from_os_error
from .log import configure, default_log
from .profiles import LOCKS_DIR, Profile, profile_for
from .prune import list_envs, prune
from .settings import CACHE, GPU, HANDLER_TYPE, Settings, load_settings


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "catalog":  # reads no settings: the lock script runs it anywhere
        return _catalog(args)
    env = dict(os.environ if environ is None else environ)
    configure()
    try:
        settings = load_settings(_overrides(env, args))
        result = args.run(args, settings, env)
    except SettingsError as exc:
        print(f"runpod-slim: {exc}", file=sys.stderr)
        return 2
    except BootstrapError as exc:
        print(f"runpod-slim: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # one the bootstrap did not turn into its own error: still one line
        print(f"runpod-slim: {from_os_error(exc, args.command)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(_text(args.command, result))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m bootstrap", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: Any, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(run=run)
        return sub

    handlers = catalog.handler_types()
    command("detect", _detect, "what GPU NVML sees")
    sub = command("plan", _plan, "what a start would install")
    sub.add_argument("--handler", choices=handlers)
    sub.add_argument("--gpu", help='auto, none, or "NAME:MAJOR.MINOR:DRIVER"')
    sub.add_argument("--python", help="plan for another Python, such as 3.10")
    sub = command("install", _install, "install (or find) the env; prints its path")
    sub.add_argument("--handler", choices=handlers)
    sub.add_argument("--cache-dir", help="the cache root (default: RUNPOD_SLIM_CACHE)")
    sub.add_argument("--gpu", help='auto, none, or "NAME:MAJOR.MINOR:DRIVER"')
    sub = command("doctor", _doctor, "GPU, cache, envs, and what a start would do")
    sub.add_argument("--handler", choices=handlers)
    sub = command("prune", _prune, "remove all but the N most recently used envs")
    sub.add_argument(
        "--keep", type=int, help="how many envs to keep (default RUNPOD_SLIM_KEEP_ENVS)"
    )
    sub.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    sub = command("catalog", None, "the handlers, envs and torch builds of this build")
    show = sub.add_mutually_exclusive_group()
    show.add_argument("--handlers", action="store_true", help="the handler names, one a line")
    show.add_argument("--locks", action="store_true", help="the locks the envs need, one a line")
    show.add_argument("--check-locks", action="store_true", help="exit 1 if a lock is missing")
    sub.add_argument("--locks-dir", default=str(LOCKS_DIR), help="where --check-locks looks")
    return parser


def _catalog(args: argparse.Namespace) -> int:
    if args.check_locks:
        missing = catalog.missing_locks(Path(args.locks_dir))
        for name in missing:
            print(
                f"runpod-slim: the catalog needs {name} and {args.locks_dir} has none; run "
                f"scripts/lock-deps.sh {name.rsplit('-', 2)[0]}",
                file=sys.stderr,
            )
        return 1 if missing else 0
    if args.json:
        print(json.dumps(catalog.to_json(), indent=2, sort_keys=True))
    elif args.locks:
        for lock_set in catalog.lock_sets():
            build = catalog.TORCH_BUILDS.get(lock_set.variant)
            source = "torch" if build is not None and build.torch_index else "index"
            print(f"{lock_set.env} {lock_set.variant} {source} {lock_set.requirements}")
    else:
        print("\n".join(catalog.HANDLERS))
    return 0


def _overrides(env: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    for flag, variable in (("handler", HANDLER_TYPE), ("gpu", GPU), ("cache_dir", CACHE)):
        value = getattr(args, flag, None)
        if value:
            env[variable] = value
    return env


def _detect(args: argparse.Namespace, settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    return detect(settings, Layout(settings.cache_root), env, default_log).to_json()


def _plan(args: argparse.Namespace, settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    gpu = detect(settings, Layout(settings.cache_root), env, default_log)
    return make_plan(settings, gpu, profile=_profile(settings), python=args.python).to_json()


def _install(args: argparse.Namespace, settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    began = time.perf_counter()
    ready = ensure(settings, environ=env, activate=False, profile=_profile(settings))
    return {
        "env": str(ready.path),
        "site": str(ready.site_dir),
        "key": ready.key,
        "cold": ready.cold,
        "seconds": round(time.perf_counter() - began, 3),
    }


def _doctor(args: argparse.Namespace, settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    layout = Layout(settings.cache_root)
    gpu = detect(settings, layout, env, default_log)
    report: dict[str, Any] = {
        "handler": settings.handler_type,
        "gpu": gpu.to_json(),
        "volume": {"path": str(settings.volume), "attached": settings.volume_attached},
        "cache_root": str(settings.cache_root),
        "envs": [
            {
                "key": e.key,
                "size_bytes": e.manifest.get("size_bytes"),
                "files": e.manifest.get("files"),
                "last_used": _iso(e.last_used),
                "in_use": e.in_use,
            }
            for e in list_envs(layout)
        ],
    }
    try:
        the_plan = make_plan(settings, gpu, profile=_profile(settings))
    except BootstrapError as exc:
        report["start_would"] = f"fail: {exc}"
        return report
    warm = (layout.env_dir(the_plan.env_key) / "manifest.json").is_file()
    report["variant"] = the_plan.variant
    report["variant_reason"] = the_plan.variant_reason
    report["env_key"] = the_plan.env_key
    report["skipped"] = [{"package": s.package, "reason": s.reason} for s in the_plan.skipped]
    report["start_would"] = (
        "start warm from the cache"
        if warm
        else f"install from {the_plan.lock.path.name} ({len(the_plan.requirements)} requirements)"
    )
    return report


def _prune(args: argparse.Namespace, settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    layout = Layout(settings.cache_root)
    keep = args.keep if args.keep is not None else settings.keep_envs
    if keep < 0:
        raise SettingsError("--keep", str(keep), "a number >= 0")
    removed = prune(layout, keep, dry_run=args.dry_run, log=default_log)
    return {"removed": removed, "dry_run": args.dry_run, "kept": [e.key for e in list_envs(layout)]}


def _profile(settings: Settings) -> Profile | None:
    """The catalog env the settings chose (tts: by its engine); None: a custom handler's."""
    return None if settings.custom else profile_for(settings)


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _text(command: str, result: dict[str, Any]) -> str:
    if command == "install":
        return str(result["env"])
    if command == "prune":
        verb = "would remove" if result["dry_run"] else "removed"
        return "\n".join([f"{verb}: {k}" for k in result["removed"]] or [f"{verb}: nothing"])
    return "\n".join(_lines(result))


def _lines(value: Any, indent: str = "") -> list[str]:
    lines = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for name, item in items:
        label = f"{indent}{name}:" if isinstance(value, dict) else f"{indent}-"
        if isinstance(item, (dict, list)) and item:
            lines.append(label)
            lines.extend(_lines(item, indent + "  "))
        else:
            lines.append(f"{label} {item}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
