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
# A URL inside free text: scheme://, then anything up to whitespace or a quote,
# less a trailing punctuation mark that ends the sentence around it.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*[^\s'\"<>`.,;:!?)\]]")


def redact_url(url: str) -> str:
    """``url`` with its userinfo and secret-looking parameters shown as ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # no authority: maybe "user:pass@host/..." written without a scheme
        head, slash, tail = url.partition("/")
        if "@" in head:
            return f"{HIDDEN}@{head.rpartition('@')[2]}{slash}{tail}"
        return url
    end = re.search(r"[/?#]", rest)
    authority, tail = (rest, "") if end is None else (rest[: end.start()], rest[end.start() :])
    if "@" in authority:
        authority = f"{HIDDEN}@{authority.rpartition('@')[2]}"
    return f"{scheme}{sep}{authority}{_SECRET_VALUE.sub(_param, tail)}"


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
