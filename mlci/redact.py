"""Credentials out of URLs before anything is shown, logged, raised or stored.

One rule, used by every message that can carry a URL (settings, storage and MLflow errors, the
command line): the password of a URL's userinfo becomes ``***`` (``http://alice:***@host``), and so
does the value of every query parameter that carries a credential (``X-Amz-Signature``, ``token``,
``password``, ...). The user name, host, port and path stay, so a message still says where.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact_text", "redact_url", "is_secret_param"]

#: What a secret is replaced with.
REDACTED = "***"

# scheme://user:password@  -- the password runs to the last '@' before the path or a blank, so an
# unencoded '@' inside it is covered too.
_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)([^\s/]*)(@)")
# ?name=value or &name=value anywhere in the text (also request paths logged without a host).
_QUERY_PARAM = re.compile(r"([?&;])([^=&;\s#'\"<>?]+)=([^&;#\s'\"<>]*)")
# Names compared in lower case: exact names, then parts that mark a credential wherever they appear.
_SECRET_NAMES = frozenset({"sig", "pwd", "auth", "key", "code"})
_SECRET_PARTS = ("token", "secret", "password", "passwd", "signature", "credential", "apikey", "api_key",
                 "api-key", "access_key", "accesskey", "private")


def is_secret_param(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a credential (case-insensitive)."""
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)


def _query_param(match: re.Match) -> str:
    sep, name, value = match.groups()
    return f"{sep}{name}={REDACTED}" if value and is_secret_param(name) else match.group(0)


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    Examples
    --------
    >>> redact_text("API request to http://alice:pw@mlflow:5000/api failed")
    'API request to http://alice:***@mlflow:5000/api failed'
    >>> redact_text("GET /bucket/clip.mp4?X-Amz-Signature=abc&part=2")
    'GET /bucket/clip.mp4?X-Amz-Signature=***&part=2'
    """
    if not isinstance(text, str) or not text:
        return text
    text = _USERINFO.sub(rf"\g<1>{REDACTED}\g<3>", text)
    return _QUERY_PARAM.sub(_query_param, text)


def redact_url(url: str | None) -> str | None:
    """``url`` without its password or secret query values (None stays None)."""
    return None if url is None else redact_text(str(url))
