"""Word error rate: how far a transcript is from its script (the speech tests' yardstick)."""

from __future__ import annotations

import re


def words_of(text: str) -> list[str]:
    """Lower-case words without punctuation (what word error rates compare)."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance (substitutions, insertions, deletions) over the reference."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, expected in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, heard in enumerate(hyp, 1):
            diagonal, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, diagonal + (expected != heard)),
            )
    return row[-1] / max(len(ref), 1)
