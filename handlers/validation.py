"""Job input checking: every field declared once, every refusal naming field, value, allowed.

A handler declares its fields as a dict of `Field`s; `validate` returns a plain dict of
checked values with defaults filled in, or raises `JobError` with one clear sentence.
Unknown fields are refused with a "did you mean", because a misspelt option silently
ignored is a wrong result, not a convenience.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bootstrap.settings import did_you_mean

from .errors import JobError

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "an object",
    list: "a list",
}


@dataclass(frozen=True)
class Field:
    """One input field: its type, whether it is required, its default and its limits."""

    kind: type
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    check: Callable[[Any], str | None] | None = None  # returns a complaint, or None
    help: str = ""


def validate(data: object, fields: Mapping[str, Field], *, where: str = "input") -> dict[str, Any]:
    """Check `data` against `fields`; the result has every declared field (default or value)."""
    if not isinstance(data, dict):
        raise JobError(f"{where} must be a JSON object, got {_describe(data)}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = unknown[0]
        hint = did_you_mean(name, list(fields))
        raise JobError(
            f"{where}.{name} is not a known field{hint}; known fields: {', '.join(sorted(fields))}"
        )
    result: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in data or data[name] is None:
            if field.required:
                raise JobError(
                    f"{where}.{name} is required" + (f": {field.help}" if field.help else "")
                )
            result[name] = field.default
            continue
        result[name] = _check(f"{where}.{name}", data[name], field)
    return result


def _check(path: str, given: Any, field: Field) -> Any:
    kind = field.kind
    value: Any = given
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not _is_kind(value, kind):
        raise JobError(
            f"{path} must be {_TYPE_NAMES.get(kind, kind.__name__)}, got {_describe(value)}"
        )
    if field.choices and value not in field.choices:
        hint = (
            did_you_mean(value, [str(c) for c in field.choices]) if isinstance(value, str) else ""
        )
        allowed = ", ".join(str(c) for c in field.choices)
        raise JobError(f"{path}={value!r} is not allowed: choose one of {allowed}{hint}")
    if field.minimum is not None and value < field.minimum:
        raise JobError(f"{path}={value!r} is too small: the minimum is {field.minimum:g}")
    if field.maximum is not None and value > field.maximum:
        raise JobError(f"{path}={value!r} is too large: the maximum is {field.maximum:g}")
    if field.max_length is not None and len(value) > field.max_length:
        raise JobError(f"{path} is {len(value)} long; the limit is {field.max_length}")
    if field.check is not None:
        complaint = field.check(value)
        if complaint:
            raise JobError(f"{path}={_short(value)}: {complaint}")
    return value


def _is_kind(value: object, kind: type) -> bool:
    # JSON's true/false are ints to Python; a field that wants a number must not take them.
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _describe(value: object) -> str:
    if value is None:
        return "null"
    names = (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (dict, "object"),
        (list, "list"),
    )
    name = next((n for kind, n in names if isinstance(value, kind)), type(value).__name__)
    return f"{name} {_short(value)}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
