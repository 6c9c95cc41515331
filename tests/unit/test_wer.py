"""The speech tests' word error rate."""

from __future__ import annotations

import pytest

from tests.support.wer import word_error_rate


def test_word_error_rate() -> None:
    assert word_error_rate("The cat sat.", "the cat sat") == 0.0
    assert word_error_rate("the cat sat", "The cat sat.") == 0.0
    assert word_error_rate("the cat sat", "the bat sat down") == pytest.approx(2 / 3)
    assert word_error_rate("a b c d", "") == 1.0
    assert word_error_rate("a b", "x a b y z") == pytest.approx(3 / 2)  # insertions count
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("don't stop", "Don't, stop!") == 0.0
