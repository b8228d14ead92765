"""Hiding credentials in URLs: one rule for ``check``, error messages and log lines.

A URL may carry a secret in two places: the userinfo (``user:password@``, or a
bare token before the ``@``) and query or fragment parameters whose names look
secret (``api-key=``, ``token=``, ``sig=``, Slack's socket ``ticket=``...). Both are
shown as ``***``; the scheme, host, port and path stay readable, since they are
what a person needs to recognise a misconfiguration.

:class:`RedactingFilter` applies the same rule to every log record that reaches
a handler, including a URL that arrives inside a library's exception text.
"""

from __future__ import annotations

import logging
import re

HIDDEN = "***"
# Parameter names that carry credentials in the URLs people paste: API keys,
# OAuth tokens and codes, signed-URL signatures, passwords, session ids, tickets.
_SECRET_PARAM = re.compile(
    r"key|token|secret|pass|pwd|auth|sig|code|credential|session|ticket|jwt|bearer",
    re.IGNORECASE,
)
# name=value after ?, &, # or ; (query, fragment and matrix parameters)
_SECRET_VALUE = re.compile(r"([?&#;])([^=&#;]*)=([^&#;]*)")
_AUTHORITY_END = re.compile(r"[/?#]")
_USERINFO_AT = re.compile(r"(?<!/)@")
# A URL inside free text: scheme://, then anything up to whitespace or a quote,
# less a trailing punctuation mark that ends the sentence around it.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*[^\s'\"<>`.,;:!?)\]]")


def redact_url(url: str) -> str:
    """``url`` with its userinfo and secret-looking parameters shown as ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # "user:pass@host" without a scheme, or a mistyped one ("http:/u:p@h")
        at = _last_userinfo_at(url)
        return url if at < 0 else f"{HIDDEN}@{url[at + 1 :]}"
    at = userinfo_end(rest)
    if at >= 0:
        rest = rest[at + 1 :]
    end = _AUTHORITY_END.search(rest)
    host, tail = (rest, "") if end is None else (rest[: end.start()], rest[end.start() :])
    shown_host = host if at < 0 else f"{HIDDEN}@{host}"
    return f"{scheme}{sep}{shown_host}{_SECRET_VALUE.sub(_param, tail)}"


def userinfo_end(rest: str) -> int:
    """Where the userinfo of ``rest`` (a URL after its "://") ends: its "@", or -1.

    A password may hold a "/", "?" or "#" that was not percent-encoded; the URL is
    then invalid, but the person still typed a secret. So when the authority looks
    like ``user:...`` and an "@" follows later, everything up to that "@" is taken
    for the userinfo: hiding too much beats printing a password.
    """
    end = _AUTHORITY_END.search(rest)
    authority = rest if end is None else rest[: end.start()]
    if "@" in authority:
        return authority.rindex("@")
    return _last_userinfo_at(rest) if ":" in authority else -1


def has_unencoded_userinfo(url: str) -> bool:
    """True when ``url``'s userinfo runs past its authority: a password holding a
    "/", "?" or "#" that was not percent-encoded (libraries misread such a URL)."""
    rest = url.partition("://")[2]
    end = _AUTHORITY_END.search(rest)
    return end is not None and userinfo_end(rest) > end.start()


def has_unencoded_at(url: str) -> bool:
    """True when ``url``'s userinfo holds an "@" that was not percent-encoded
    (libraries end the userinfo at the first "@", this module at the last)."""
    rest = url.partition("://")[2]
    at = userinfo_end(rest)
    return at > 0 and "@" in rest[:at]


def _last_userinfo_at(text: str) -> int:
    # An "@" that starts a path segment ("/users/@me") ends no userinfo.
    ats = [m.start() for m in _USERINFO_AT.finditer(text)]
    return ats[-1] if ats else -1


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def _param(match: re.Match[str]) -> str:
    lead, name, value = match.group(1), match.group(2), match.group(3)
    if value and _SECRET_PARAM.search(name):
        value = HIDDEN
    return f"{lead}{name}={value}"


class RedactingFilter(logging.Filter):
    """Redacts URLs in a record's message and exception text before it is written.

    Attach it to handlers (not loggers): a handler's filters see the records of
    every logger that propagates to it, libraries' included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call; logging itself reports it when emitting
            return True
        shown = redact_text(message)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a :class:`RedactingFilter` to every handler of ``logger`` (the root)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
