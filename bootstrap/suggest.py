""" "Did you mean ...?" for a value that is close to one of the choices.

A neutral string helper: the bootstrap's settings and the handlers' messages both use it, and
importing it loads nothing else.
"""

from __future__ import annotations


def did_you_mean(value: str, choices: tuple[str, ...] | list[str]) -> str:
    """A ' (did you mean X?)' suffix when a choice is close to the value, else ''."""
    import difflib  # only on the error path

    close = difflib.get_close_matches(value.lower(), list(choices), n=1, cutoff=0.6)
    if not close and len(value) >= 3:
        close = [c for c in choices if c.startswith(value.lower())][:1]  # an abbreviation
    return f" (did you mean {close[0]!r}?)" if close else ""
