"""The handlers' errors: one base, `HandlerError`, that the worker's error paths catch.

A job reports `{"error": "<one string>"}` on every path: a `HandlerError`'s message is that
string, so it says what happened and what is allowed, never an exception type or a temp path.
"""

from __future__ import annotations

from bootstrap.errors import SettingsError as BootstrapSettingsError


class HandlerError(Exception):
    """Base of every error a handler raises on purpose; its message is for the caller."""


class JobError(HandlerError):
    """A job cannot be done as asked; the message is what the caller reads."""


class SetupError(HandlerError):
    """A handler's setup failed; kept and reported on every job of this worker."""


class SettingsError(HandlerError, BootstrapSettingsError):
    """A handler's own setting has a value it cannot use: the worker does not start.

    Also a bootstrap SettingsError, so the start reports it in the same one line as the
    bootstrap's own settings (variable, value, what is allowed).
    """
