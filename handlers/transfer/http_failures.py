"""How an HTTP transfer fails, said once for downloads and presigned-PUT uploads alike."""

from __future__ import annotations

import contextlib
import http.client
import urllib.error
from collections.abc import Callable, Iterator

from .. import netguard
from ..errors import JobError
from ..redaction import reason


@contextlib.contextmanager
def http_failures(
    field: str,
    shown: str,
    guard: netguard.Guard,
    *,
    verb: str,
    idle: str,
    left: Callable[[], float],
    answered: Callable[[urllib.error.HTTPError], str] = lambda exc: "",
) -> Iterator[None]:
    """Every way the transfer inside can fail, as one sentence naming `field` and the URL.

    `verb` says what was tried ("download", "upload to"), `idle` what a stalled peer did,
    `answered` adds to an HTTP error status. The guard's sockets are closed whatever happens.
    """
    try:
        yield
    except urllib.error.HTTPError as exc:
        status = f"HTTP {exc.code} {str(exc.reason)[:80]}"
        raise JobError(f"{field}: {shown} answered {status}{answered(exc)}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, JobError):  # the guard's refusal, raised inside a connect
            raise exc.reason from None
        raise JobError(f"{field}: cannot {verb} {shown}: {reason(exc.reason)}") from None
    except (http.client.HTTPException, ValueError) as exc:
        raise JobError(f"{field}: cannot {verb} {shown}: {reason(exc)}") from None
    except TimeoutError:
        left()  # the job's deadline, if that was it
        raise JobError(f"{field}: {shown} {idle} for 60 s; gave up") from None
    except OSError as exc:
        raise JobError(f"{field}: cannot {verb} {shown}: {reason(exc)}") from None
    finally:
        guard.close()
