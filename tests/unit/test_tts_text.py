"""handlers.tts.text: splitting text into the pieces it is spoken in.

No model and no tts env: these run in the dev venv.
"""

from __future__ import annotations

import pytest

from handlers.tts.text import speakable, split_sentences


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("One!Two. Three", ["One!Two.", "Three"]),  # no space after the mark: one piece
        (
            "Mr. Smith met Dr. Jones, e.g. at noon. They talked.",
            ["Mr. Smith met Dr. Jones, e.g. at noon.", "They talked."],
        ),
        ("J. R. R. Tolkien wrote it. The end.", ["J. R. R. Tolkien wrote it.", "The end."]),
        ("It costs 3.50 today. Yes.", ["It costs 3.50 today.", "Yes."]),
        ('She said "Stop!" Then she left.', ['She said "Stop!"', "Then she left."]),
        ("(Quietly.) Go on.", ["(Quietly.)", "Go on."]),
        ("Really?! Yes\u2026 I think so.", ["Really?!", "Yes\u2026", "I think so."]),
        (
            "A line\nwrapped in the middle.\n\nA paragraph without a period",
            ["A line wrapped in the middle.", "A paragraph without a period"],
        ),
        ("Hello. ... ! -- Bye.", ["Hello.", "-- Bye."]),
        ("  \n  ", []),
    ],
)
def test_split_sentences(text: str, pieces: list[str]) -> None:
    assert split_sentences(text) == pieces


def test_a_long_sentence_is_split_at_commas_then_at_spaces() -> None:
    clauses = [f"clause number {i} goes on for a while" for i in range(12)]
    sentence = ", ".join(clauses) + "."
    pieces = split_sentences(sentence, max_chars=100)
    assert all(len(p) <= 100 for p in pieces) and len(pieces) > 3
    assert " ".join(pieces) == sentence
    assert all(p.endswith((",", ".")) for p in pieces)  # cut only after a comma

    words = " ".join(f"word{i}" for i in range(60))  # no commas at all
    pieces = split_sentences(words, max_chars=50)
    assert all(len(p) <= 50 for p in pieces) and " ".join(pieces) == words

    assert split_sentences("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


def test_speakable_needs_a_letter_or_a_digit() -> None:
    assert speakable("a") and speakable("7") and speakable("\u00e9t\u00e9")
    assert not speakable("") and not speakable(" ...!? -- ")
