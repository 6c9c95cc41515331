"""Job input checking: every field declared once, every refusal naming field, value, allowed.

A handler declares its fields as a dict of `Field`s; `validate` returns a plain dict of
checked values with defaults filled in, or raises `JobError` with one clear sentence.
Unknown fields are refused with a "did you mean", because a misspelt option silently
ignored is a wrong result, not a convenience.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bootstrap.suggest import did_you_mean

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
    secret: bool = False  # a refusal never shows the value given (credentials)


def validate(data: object, fields: Mapping[str, Field], *, where: str = "input") -> dict[str, Any]:
    """Check `data` against `fields`; the result has every declared field (default or value)."""
    if not isinstance(data, dict):
        raise JobError(f"{where} must be a JSON object, got {_describe(data)}")
    unknown = sorted((str(name) for name in data if name not in fields), key=ascii)
    if unknown:
        name = unknown[0]
        hint = did_you_mean(name, list(fields)) if name.isprintable() and len(name) < 100 else ""
        raise JobError(
            f"{where}.{_name(name)} is not a known field{hint}; known fields: "
            f"{', '.join(sorted(fields))}"
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
    wanted = _TYPE_NAMES.get(kind, kind.__name__)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise JobError(f"{path} is too large a number; give {wanted} in range") from None
    if not _is_kind(value, kind):
        got = _kind_name(value) if field.secret else _describe(value)
        raise JobError(f"{path} must be {wanted}, got {got}")
    if field.secret:
        if field.max_length is not None and len(value) > field.max_length:
            raise JobError(f"{path} is {len(value)} long; the limit is {field.max_length}")
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise JobError(f"{path}={value!r} is not allowed: give a finite number")
    if isinstance(value, float) and value != 0 and abs(value) < sys.float_info.min:
        raise JobError(f"{path}={_short(value)} is too small a number to use (subnormal)")
    if isinstance(value, str):
        if "\x00" in value:
            raise JobError(f"{path}={_short(value)} contains a NUL character; not allowed")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise JobError(f"{path}={_short(value)} is not valid UTF-8 text") from None
    if field.choices and value not in field.choices:
        short = isinstance(value, str) and len(value) < 100
        hint = did_you_mean(value, [str(c) for c in field.choices]) if short else ""
        allowed = ", ".join(str(c) for c in field.choices)
        raise JobError(f"{path}={_short(value)} is not allowed: choose one of {allowed}{hint}")
    if field.minimum is not None and value < field.minimum:
        raise JobError(f"{path}={_short(value)} is too small: the minimum is {field.minimum:g}")
    if field.maximum is not None and value > field.maximum:
        raise JobError(f"{path}={_short(value)} is too large: the maximum is {field.maximum:g}")
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
    name = _type_name(value)
    if isinstance(value, dict | list):  # its contents are not echoed: they may hold secrets
        return f"{'an' if name == 'object' else 'a'} {name} of {len(value)} items"
    return f"{name} {_short(value)}"


def _type_name(value: object) -> str:
    names = (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (dict, "object"),
        (list, "list"),
    )
    return next((n for kind, n in names if isinstance(value, kind)), type(value).__name__)


def _kind_name(value: object) -> str:
    return f"{_type_name(value)} (not shown)"


def _name(name: str) -> str:
    """A field name as an error shows it: printable, short."""
    text = name if len(name) <= 60 else name[:57] + "..."
    return text if text.isprintable() and text.isascii() else ascii(text)


def _short(value: object) -> str:
    if isinstance(value, str) and len(value) > 200:
        value = value[:80]  # a 1 MiB value is never turned into text whole
    elif isinstance(value, list | dict) and len(value) > 20:
        return f"a {'list' if isinstance(value, list) else 'object'} of {len(value)} items"
    try:
        text = ascii(value) if isinstance(value, str) else repr(value)
    except (ValueError, RecursionError):  # ints past 4300 digits, deep nesting
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= 80 else text[:77] + "..."
