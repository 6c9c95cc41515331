"""The words of a tts job, cut into the pieces it is spoken in: sentences, short enough to
stream (a short first piece is a fast first chunk)."""

from __future__ import annotations

import re

MAX_PIECE_CHARS = 300  # longer sentences are split: a short first chunk arrives sooner

_CLOSERS = "\"')]\u201d\u2019"  # quotes and brackets that may follow a sentence's end
_OPENERS = "\"'([\u201c\u2018"
_SENTENCE_END = re.compile(rf"[.!?\u2026]+[{re.escape(_CLOSERS)}]*(?=\s|$)")
# A period after these ends no sentence ("Mr. Smith", "e.g. this").
_ABBREVIATIONS = frozenset(
    ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "fig", "approx")
)


def split_sentences(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """The pieces `text` is spoken in: sentences, each at most `max_chars` long.

    Blank lines end a paragraph (and a sentence); single line breaks are spaces. A period after
    a common abbreviation (Mr., e.g.) or an initial (J.) ends no sentence. A sentence over
    `max_chars` is split at commas, semicolons or colons, then at spaces. Pieces with nothing
    to say (no letter or digit) are left out.
    """
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        start = 0
        for match in _SENTENCE_END.finditer(flat):
            if match.group().startswith(".") and _after_abbreviation(flat, match.start()):
                continue
            sentences.append(flat[start : match.end()].strip())
            start = match.end()
        sentences.append(flat[start:].strip())
    return [
        piece for sentence in sentences for piece in _fit(sentence, max_chars) if speakable(piece)
    ]


def speakable(text: str) -> bool:
    """Whether `text` has anything to say: a letter or a digit."""
    return any(ch.isalnum() for ch in text)


def _after_abbreviation(text: str, period: int) -> bool:
    word = text[:period].rsplit(" ", 1)[-1].lstrip(_OPENERS).lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _fit(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _pack(re.split(r"(?<=[,;:])\s+", sentence), max_chars):
        if len(clause) <= max_chars:
            pieces.append(clause)
            continue
        words = [
            word[i : i + max_chars]
            for word in clause.split()
            for i in range(0, len(word), max_chars)
        ]
        pieces += _pack(words, max_chars)
    return pieces


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Join neighbouring parts with spaces while they fit in `max_chars`."""
    packed: list[str] = []
    for part in parts:
        if packed and len(packed[-1]) + 1 + len(part) <= max_chars:
            packed[-1] += " " + part
        else:
            packed.append(part)
    return packed
