"""Slack's write limits as the bot paces them, and what a 429 does.

Slack limits each Web API method per app per workspace (tiers, per minute), and
chat.postMessage about one message per second per channel with short bursts.
So the sink paces each kind of write on its own bucket (``bot/pacing.py``):
posts per channel, every other write per workspace and method. Our buckets are
a little smaller than Slack's documented bursts, so timing jitter between our
clock and Slack's does not turn into 429s.

A 429 blocks that method for that workspace for the Retry-After Slack sent:
every write waiting on the bucket moves back, the call that got the 429 waits
once and is made again. slack_sdk's own retry handler would sleep a second
time (and with up to a second of jitter), so it leaves our writes alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.pacing import Pace

SECONDS_PER_MINUTE = 60.0
POST = "chat.postMessage"
UPDATE = "chat.update"
START = "chat.startStream"
APPEND = "chat.appendStream"
STOP = "chat.stopStream"
STATUS = "assistant.threads.setStatus"
# The core's write kinds (bot/delivery.py) and the Slack method each one calls.
METHOD_FOR_OP = MappingProxyType(
    {"send": POST, "edit": UPDATE, "start": START, "append": APPEND, "stop": STOP}
)
# chat.postMessage: "about 1 per second per channel, short bursts allowed".
POST_BURST = 2
POST_RATE = 1.0
# (burst, calls per minute) per workspace. chat.update is Tier 3 (50+/min) and
# chat.appendStream Tier 4 (100+/min); chat.startStream and chat.stopStream are
# listed as Tier 2 (20+/min), so a busy workspace streams only some answers natively
# and posts the others whole (see ReplyStream._wait_paced).
TIERS: Mapping[str, tuple[int, float]] = MappingProxyType(
    {
        UPDATE: (5, 50.0),
        APPEND: (10, 100.0),
        START: (3, 20.0),
        STOP: (3, 20.0),
        STATUS: (5, 50.0),  # Tier 3; the status line is skipped when none is left
    }
)
# Writes whose 429s our pacer handles; the status line is only skipped on a 429.
PACED_METHODS = frozenset({*METHOD_FOR_OP.values(), STATUS})
RATE_LIMIT_RETRIES = 5  # 429s on one write before it fails like any other error
DEFAULT_RETRY_AFTER_S = 1.0  # a 429 without a usable Retry-After header


@dataclass(frozen=True, slots=True)
class SlackPaces:
    """Buckets for Slack writes: posts per channel, other methods per workspace."""

    post_burst: int = POST_BURST
    post_rate: float = POST_RATE  # per second, per channel
    tiers: Mapping[str, tuple[int, float]] = field(default_factory=lambda: TIERS)

    def pace(self, team: str, channel: str, method: str) -> Pace:
        """The bucket one call of ``method`` in ``channel`` of ``team`` takes a token from."""
        tier = self.tiers.get(method)
        if tier is None:  # chat.postMessage, and anything we do not know a tier for
            return Pace(f"slack:{team}:{channel}:post", self.post_burst, self.post_rate)
        burst, per_minute = tier
        return Pace(f"slack:{team}:{method}", burst, per_minute / SECONDS_PER_MINUTE)


def unlimited_paces(calls_per_s: float = 1_000_000.0) -> SlackPaces:
    """Paces that never wait (tests of other behaviour, benchmarks of the bot's CPU)."""
    burst = int(calls_per_s)
    tiers = {method: (burst, calls_per_s * SECONDS_PER_MINUTE) for method in TIERS}
    return SlackPaces(post_burst=burst, post_rate=calls_per_s, tiers=MappingProxyType(tiers))


def retry_after(exc: SlackApiError) -> float | None:
    """Seconds Slack asked us to wait, if ``exc`` is a 429; None for any other error."""
    response = exc.response
    if getattr(response, "status_code", None) != 429:
        return None
    headers: Mapping[str, Any] = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            with contextlib.suppress(TypeError, ValueError):
                return max(0.0, float(value[0] if isinstance(value, list) else value))
    return DEFAULT_RETRY_AFTER_S


def api_method(url: str) -> str:
    """``https://slack.com/api/chat.update?x=1`` -> ``chat.update``."""
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


class ReadsRateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 retry for every call except the writes our pacer handles."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if api_method(request.url) in PACED_METHODS:
            return False
        return await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )
