"""The one error a job reports: `{"error": "<one string>"}` on every path."""

from __future__ import annotations


class JobError(Exception):
    """A job cannot be done as asked; the message is what the caller reads."""


class SetupError(Exception):
    """A handler's setup failed; kept and reported on every job of this worker."""
