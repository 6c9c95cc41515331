"""A storage job's input, checked and read once into its action's typed value."""

from __future__ import annotations

import pytest

from handlers.errors import JobError
from handlers.storage.fields import Cache, Copy, Listing, OneSource, Presign, parse


def test_each_action_reads_into_its_own_value() -> None:
    assert parse("copy", {"source": "s3://b/k", "destination": "volume://x"}, 3600) == Copy(
        "s3://b/k", None, "volume://x", 3600
    )
    assert parse("presign", {"source": "s3://b/k", "expires_s": 60}, 3600) == Presign(
        "s3://b/k", 60
    )
    assert parse("list", {"source": "volume://d", "cursor": ""}, 3600) == Listing(
        "volume://d", 1000, None
    )
    assert parse("stat", {"source": "volume://f"}, 3600) == OneSource("volume://f")
    assert parse("cache", {"prune": True, "keep": 2}, 3600) == Cache(True, 2, False)


def test_the_workers_url_lifetime_is_the_default_not_an_override() -> None:
    assert parse("copy", {"source_base64": "eA==", "destination": "s3://b/k"}, 90).expires_s == 90
    given = {"source_base64": "eA==", "destination": "s3://b/k", "expires_s": 7}
    assert parse("copy", given, 90).expires_s == 7


def test_a_bad_field_is_refused_naming_it() -> None:
    with pytest.raises(JobError, match=r"input\.limit"):
        parse("list", {"source": "volume://d", "limit": 0}, 3600)
