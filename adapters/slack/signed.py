"""Slack's HTTP events: a request's signature is checked before anything reads it.

Anyone who finds the events URL can post to it. bolt checks the signature too, but
only after parsing the body (a malformed one raised a 500 with a traceback), and
it logs each refused request with its whole body at INFO (a stranger posting
megabytes filled the log). Here an unsigned or stale request is refused with a 401
before the body is parsed, and the refusals are logged at most once a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from slack_sdk.signature import SignatureVerifier

from bot.failure_log import FailureLog

log = logging.getLogger(__name__)

TIMESTAMP = "X-Slack-Request-Timestamp"
SIGNATURE = "X-Slack-Signature"
REFUSED = "Slack HTTP: refused requests not signed with SLACK_SIGNING_SECRET (or stale)"


class SignatureGate:
    """Tells signed requests from the rest, and logs the rest at a bounded rate."""

    def __init__(self, signing_secret: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._verifier = SignatureVerifier(signing_secret)
        self._refused = FailureLog(log, REFUSED, clock=clock)

    def admits(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether ``body`` carries a valid, current signature; logs a refusal."""
        timestamp, signature = headers.get(TIMESTAMP), headers.get(SIGNATURE)
        try:
            signed = self._verifier.is_valid(body, timestamp, signature)
        except (ValueError, TypeError):  # a timestamp that is not a number, or a
            signed = False  # signature with characters hmac cannot compare
        if not signed:
            self._refused.failed(
                f"{len(body)} bytes, signature {'present' if signature else 'missing'}"
            )
        return signed
