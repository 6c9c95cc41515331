"""The setting forms every handler's settings share (handlers.setting_values)."""

from __future__ import annotations

import pytest

from bootstrap.errors import SettingsError
from handlers.setting_values import flag, megabytes, positive_whole


def test_values_and_defaults() -> None:
    env = {"N": " 12 ", "MB": "2.5", "ON": "Yes"}
    assert positive_whole(env, "N", 1) == 12 and positive_whole(env, "UNSET", 7) == 7
    assert megabytes(env, "MB", 1.0) == 2.5 and megabytes(env, "UNSET", 8.0) == 8.0
    assert flag(env, "ON") is True and flag(env, "UNSET") is False


@pytest.mark.parametrize(
    ("reader", "raw", "allowed"),
    [
        (positive_whole, "0", "a whole number > 0"),
        (positive_whole, "\u0663", "a whole number > 0"),  # an Arabic-Indic 3: not ASCII
        (megabytes, "inf", "a number of megabytes > 0"),
        (megabytes, "nan", "a number of megabytes > 0"),
        (flag, "maybe", "use 1/true/yes/on or 0/false/no/off"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(
    reader: object, raw: str, allowed: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        reader({"V": raw}, "V", *(() if reader is flag else (1,)))  # type: ignore[operator]
    assert str(caught.value) == f"V={raw!r} is not valid: {allowed}"
