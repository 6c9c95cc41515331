"""What a job's `language` may be: a code Whisper knows, and English with an English-only model."""

from __future__ import annotations

from bootstrap.suggest import did_you_mean

from ..errors import JobError


def check_language(language: str | None) -> None:
    """A language code Whisper knows, or None (detect it)."""
    if language is None:
        return
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    if language not in _LANGUAGE_CODES:
        raise JobError(
            f"input.language={language!r} is not allowed: choose one of "
            f"{', '.join(sorted(_LANGUAGE_CODES))}"
            f"{did_you_mean(language, sorted(_LANGUAGE_CODES))}, or leave it out to "
            "detect the language"
        )


def check_english_only(multilingual: bool, model: str, language: str | None) -> None:
    """An English-only model (tiny.en, ...) hears English or detects it; nothing else."""
    if not multilingual and language not in (None, "en"):
        raise JobError(
            f"input.language={language!r} is not allowed with the English-only "
            f"model {model!r}: choose en, or a multilingual model"
        )
