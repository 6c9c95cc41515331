"""Job input checking: exact messages naming field, value and what is allowed."""

from __future__ import annotations

import pytest

from handlers.errors import JobError
from handlers.validation import Field, validate

FIELDS = {
    "action": Field(str, required=True, choices=("copy", "list")),
    "limit": Field(int, default=10, minimum=1, maximum=100),
    "ratio": Field(float, default=1.0),
    "text": Field(str, max_length=5),
    "flag": Field(bool, default=False),
}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "input must be a JSON object, got a list of 0 items"),
        ({}, "input.action is required"),
        (
            {"action": "cpy"},
            "input.action='cpy' is not allowed: choose one of copy, list (did you mean 'copy'?)",
        ),
        (
            {"action": "copy", "limt": 3},
            "input.limt is not a known field (did you mean 'limit'?); "
            "known fields: action, flag, limit, ratio, text",
        ),
        ({"action": "copy", "limit": "3"}, "input.limit must be an integer, got string '3'"),
        ({"action": "copy", "limit": True}, "input.limit must be an integer, got boolean True"),
        ({"action": "copy", "limit": 0}, "input.limit=0 is too small: the minimum is 1"),
        ({"action": "copy", "limit": 101}, "input.limit=101 is too large: the maximum is 100"),
        ({"action": "copy", "text": "toolong"}, "input.text is 7 long; the limit is 5"),
        ({"action": "copy", "flag": 1}, "input.flag must be true or false, got integer 1"),
    ],
)
def test_refusals(data: object, message: str) -> None:
    with pytest.raises(JobError) as info:
        validate(data, FIELDS)
    assert str(info.value) == message


def test_defaults_and_coercion() -> None:
    assert validate({"action": "list", "ratio": 2}, FIELDS) == {
        "action": "list",
        "limit": 10,
        "ratio": 2.0,
        "text": None,
        "flag": False,
    }
