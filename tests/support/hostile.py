"""Hostile job inputs, generated from the handlers' own field tables, and checks on answers.

For every action of a handler, a valid base job is taken and one field at a time is replaced
by a hostile value: wrong types, hostile strings (NUL, lone surrogates, 1 MiB, names over 255
bytes, `..`, absolute paths, URL tricks, the worker's cache), numbers (NaN, infinities,
subnormal, huge, negative) and structures (nested, lists). Unknown field names (a lone
surrogate among them) are added too. A seeded sample keeps it to a few hundred jobs.

`check_answer` says what is wrong with one answer of the local API, or None: every answer
is an output or a clean error (one sentence, no exception type, no "internal error", no
temporary path, short, no canary).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

CANARY = "HOSTILE-CANARY-5be1"

STRINGS: tuple[Any, ...] = (
    "",
    " ",
    "\x00",
    "a\x00b.txt",
    "\udc80",
    "x\ud800y",
    "x" * (1 << 20),
    "n" * 256,
    "\u202eevil",
    "..",
    "../../etc/passwd",
    "/etc/passwd",
    "-i",
    "$(id)",
    "; rm -rf /",
    "%n%s%x",
    "volume://",
    "volume://.",
    "volume://..",
    "volume:///etc/passwd",
    "volume://../etc/passwd",
    "volume://.runpod-slim/envs/x/site/runpod/__init__.py",
    "volume://.RUNPOD-SLIM/",
    "volume://" + "d/" * 2100,
    "volume://" + "n" * 300,
    "volume://a\x00b",
    "file:///etc/passwd",
    "ftp://example.invalid/x",
    "gopher://127.0.0.1:70/x",
    "http://127.0.0.1:1/x",
    "http://[::1]:1/x",
    "http://[::ffff:127.0.0.1]:1/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0:1/x",
    "http://[::1",
    "http://x:notaport/",
    "http:///nohost",
    f"https://user:{CANARY}@example.invalid/x?X-Amz-Signature={CANARY}",
    # Presigned PUT URLs as destinations: to the metadata service and loopback, signed.
    f"http://169.254.169.254/bucket/out.bin?X-Amz-Signature={CANARY}",
    f"https://127.0.0.1:1/bucket/out.bin?X-Amz-Credential={CANARY}&X-Amz-Signature=1",
    "s3://",
    "s3://b",
    "s3://bucket/\x00",
    "s3://" + "b" * 300 + "/k",
    "s3://bucket/" + "k" * 2000,
    "data:,hello",
    "aGVsbG8=",
)
NUMBERS: tuple[Any, ...] = (
    float("nan"),
    float("inf"),
    float("-inf"),
    5e-324,
    1e308,
    -1,
    0,
    -0.0,
    2**63,
    10**30,
    0.5,
    True,
)
STRUCTURES: tuple[Any, ...] = (
    None,
    [],
    {},
    ["volume://x"],
    {"a": {"b": {"c": [1, 2, {"d": None}]}}},
    {"access_key_id": "k", "secret_access_key": {"x": CANARY}},
    {"endpoint_url": "http://169.254.169.254", "access_key_id": "k", "secret_access_key": CANARY},
    {"endpoint_url": "http://[::1", "access_key_id": "k", "secret_access_key": CANARY},
    {"region": "\x00", "access_key_id": "k", "secret_access_key": CANARY},
    json.loads("[" * 60 + "1" + "]" * 60),
)
FIELD_NAMES = ("\udc80", "x" * 300, "", "__class__", "credentials ")


@dataclass(frozen=True)
class Case:
    """One hostile job: what it is (for a failure message) and the input."""

    label: str
    input: dict[str, Any]


def cases(
    fields: Mapping[str, Mapping[str, Any]],
    bases: Mapping[str, Mapping[str, Any]],
    *,
    seed: int,
    count: int,
    action_field: str | None = "action",
) -> list[Case]:
    """A seeded sample of `count` hostile jobs over every action and field.

    `fields`: action -> its field table (names are what matters); `bases`: action -> a valid
    job. With action_field None the handler has one action (its key in both maps is "").
    """
    every = list(_all_cases(fields, bases, action_field))
    rng = random.Random(seed)
    if len(every) <= count:
        return every
    # Every (action, field) pair keeps at least one case; the rest is a random sample.
    firsts: dict[str, Case] = {}
    for case in every:
        firsts.setdefault(case.label.rsplit("=", 1)[0], case)
    rest = [c for c in every if c not in firsts.values()]
    return list(firsts.values()) + rng.sample(rest, max(0, count - len(firsts)))


def _all_cases(
    fields: Mapping[str, Mapping[str, Any]],
    bases: Mapping[str, Mapping[str, Any]],
    action_field: str | None,
) -> Iterator[Case]:
    values = (*STRINGS, *NUMBERS, *STRUCTURES)
    if action_field is not None:
        for value in values:
            yield Case(f"{action_field}={_label(value)}", {action_field: value})
    for action, table in fields.items():
        base = dict(bases[action])
        for name in table:
            for value in values:
                job = {**base, name: value}
                yield Case(f"{action}.{name}={_label(value)}", job)
        for name in FIELD_NAMES:
            yield Case(f"{action}.<{_label(name)}>", {**base, name: 1})


def _label(value: Any) -> str:
    text = ascii(value) if not isinstance(value, dict | list) else json.dumps(value)[:40]
    return text[:40]


_EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b")


def check_answer(answer: Mapping[str, Any]) -> str | None:
    """What is wrong with one /runsync answer, or None when it is an output or a clean error."""
    text = json.dumps(answer)
    if CANARY in text:
        return "the canary came back"
    status = answer.get("status")
    output = answer.get("output")
    errors: list[str] = []
    if status == "FAILED":
        errors.append(str(answer.get("error")))
    elif status == "COMPLETED":
        parts = output if isinstance(output, list) else [output]
        errors += [str(p["error"]) for p in parts if isinstance(p, dict) and "error" in p]
    else:
        return f"status {status!r}"
    for error in errors:
        problem = _check_error(error)
        if problem:
            return f"{problem}: {error[:300]!r}"
    return None


def _check_error(error: str) -> str | None:
    if len(error) > 300:
        return f"{len(error)} characters long"
    if "internal error" in error:
        return "an internal error"
    if _EXCEPTION_NAME.search(error):
        return "an exception's type name"
    if "runpod-slim-job-" in error or "/tmp/tmp" in error:
        return "a temporary path"
    if "\n" in error:
        return "more than one line"
    return None
