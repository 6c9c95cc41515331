"""What doctor and prune see of the cache: published envs, their last use, and removal.

An env is in use while one of its leases is fresh, unless the lease names its process (an
`Owner`, as the install lock does) and that process is provably gone: a one-shot run that
exited a moment ago no longer holds its env.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import LEASE_FRESH_S, Layout, discard, empty_trash, read_manifest
from .lock import Owner, read_owner


@dataclass(frozen=True)
class EnvEntry:
    """One published env, as doctor and prune see it."""

    key: str
    path: Path
    manifest: dict[str, Any]
    last_used: float
    in_use: bool


def list_envs(layout: Layout, clock: Callable[[], float] = time.time) -> list[EnvEntry]:
    """Published envs, most recently used first."""
    entries: list[EnvEntry] = []
    if not layout.envs.is_dir():
        return entries
    now = clock()
    me = Owner.me()
    for env_dir in layout.envs.iterdir():
        manifest = read_manifest(env_dir)
        if manifest is None:
            continue
        times = [float(manifest.get("published_at", 0))]
        in_use = False
        leases = env_dir / "leases"
        for lease in leases.iterdir() if leases.is_dir() else ():
            with contextlib.suppress(OSError):
                mtime = lease.stat().st_mtime
                times.append(mtime)
                in_use = in_use or lease_in_use(lease, now - mtime, me)
        entries.append(EnvEntry(env_dir.name, env_dir, manifest, max(times), in_use))
    return sorted(entries, key=lambda e: e.last_used, reverse=True)


def lease_in_use(lease: Path, age_s: float, me: Owner) -> bool:
    """A lease touched within LEASE_FRESH_S whose process is not provably gone."""
    if age_s >= LEASE_FRESH_S:
        return False
    holder = read_owner(lease)  # None for an empty lease: its freshness alone decides
    return holder is None or not holder.provably_dead(me)


def prune(
    layout: Layout,
    keep: int,
    *,
    protect: frozenset[str] = frozenset(),
    dry_run: bool = False,
    log: Callable[[str], None],
    clock: Callable[[], float] = time.time,
) -> list[str]:
    """Remove all but the `keep` most recently used envs; never one in use or being installed.

    Returns the keys removed (or that would be, with dry_run).
    """
    removed = []
    entries = list_envs(layout, clock)
    if not dry_run:
        for entry in entries[:keep]:
            fold_stale_leases(entry, clock())
    for entry in entries[keep:]:
        lock = layout.lock_file(entry.key)
        if entry.in_use or entry.key in protect or lock.exists():
            log(f"prune: keeping {entry.key} (in use or being installed)")
            continue
        removed.append(entry.key)
        if not dry_run:
            discard(layout, entry.path)
            log(f"prune: removed {entry.key}")
    if not dry_run:
        empty_trash(layout)
    return removed


LAST_USED = ".last-used"  # in leases/: its mtime keeps the last use of leases removed


def fold_stale_leases(entry: EnvEntry, now: float) -> None:
    """Remove an env's stale leases (one per worker start would pile up), keeping its last use."""
    leases = entry.path / "leases"
    stale: list[tuple[Path, float]] = []
    for lease in leases.iterdir() if leases.is_dir() else ():
        with contextlib.suppress(OSError):
            mtime = lease.stat().st_mtime
            if lease.name != LAST_USED and now - mtime >= LEASE_FRESH_S:
                stale.append((lease, mtime))
    if not stale:
        return
    marker = leases / LAST_USED
    try:
        last = max(marker.stat().st_mtime, *(mtime for _, mtime in stale))
    except FileNotFoundError:
        last = max(mtime for _, mtime in stale)
    marker.touch()
    os.utime(marker, (last, last))
    for lease, _ in stale:
        lease.unlink(missing_ok=True)
