"""Fixtures for the integration tests: a real MooseFS network volume.

From :mod:`tests.support.moosefs`, imported here so that every test in this
directory can ask for them (no ``pytest_plugins`` needed):

``moosefs``
    the session's volume: two mounts (two worker nodes), no added latency.
``moosefs_factory``
    ``factory(latency_ms=0.0, clients=2, via_proxy=None) -> MooseFS``, one
    cluster per set of arguments for the session.
``require_moosefs``
    for tests that start their own cluster with ``moosefs_cluster``: skips
    where MooseFS is not installed (fails under ``CI=true``).
"""

from __future__ import annotations

from tests.support.moosefs import moosefs, moosefs_factory, require_moosefs

__all__ = ["moosefs", "moosefs_factory", "require_moosefs"]
