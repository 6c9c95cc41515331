"""What may be shown of a job's text in errors, progress lines and logs.

Every error a job returns, every progress line and every logged traceback passes through
`redact` (handler.py calls it): known secrets become ***, URLs lose their userinfo, query
string and fragment (where signed URLs keep X-Amz-Signature and tokens), and paths into the
job's private temporary directory are cut to the file's own name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://[^\s'\"<>]+")
# handlers.workdirs.JOB_PREFIX: the job's own folder (inside its worker's runpod-slim-jobs-*).
_JOB_DIR = re.compile(r"(?:file:)?(?:/[^\s'\"/]+)*/runpod-slim-job-[A-Za-z0-9_]+/?")


def shown_url(url: str) -> str:
    """`url` without userinfo, query string and fragment: what an error may show of it.

    Plain string surgery, not urlsplit: it cannot fail on a malformed URL, and it leaves the
    rest exactly as given (`volume:///x` stays itself).
    """
    cuts = [i for i in (url.find("?"), url.find("#")) if i >= 0]
    cut = min(cuts) if cuts else len(url)
    scheme, sep, rest = url[:cut].partition("://")
    authority, slash, path = rest.partition("/")
    authority = authority.rsplit("@", 1)[-1]
    return scheme + sep + authority + slash + path + ("?..." if cut < len(url) else "")


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with secrets replaced by ***, URLs shown without their secrets, temp dirs cut."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URL.sub(lambda match: shown_url(match.group()), text)
    return _JOB_DIR.sub("", text)


def short(value: str, limit: int = 120) -> str:
    """repr() of a value cut to `limit` characters: how an error quotes what a job gave."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def reason(exc: object) -> str:
    """An exception's own words, one line, short, without its type's name."""
    text = getattr(exc, "strerror", None) or str(exc) or "the connection failed"
    return " ".join(str(text).split())[:120]
