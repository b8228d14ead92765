"""Slack's documented Web API rate limits, for the fake Slack to enforce.

Slack limits each method per app per workspace by tier ("Tier 2: 20+ per minute",
"Tier 3: 50+", "Tier 4: 100+", each with some burst), and posting messages at
"about 1 per second per channel, short bursts allowed", plus a workspace-wide cap
it gives no number for ("several hundred per minute"; off here unless set). Past a
limit Slack answers HTTP 429 with ``Retry-After`` in whole seconds.

Each limit is a token bucket: ``burst`` calls at once, then ``per_minute / 60``
per second. Only the writes the bot makes are limited by default; reads
(users.info, auth.test) are not, so a benchmark's warm-up is not what it measures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SECONDS_PER_MINUTE = 60.0
POST = "chat.postMessage"


@dataclass(frozen=True, slots=True)
class Tier:
    """``per_minute`` calls a minute, ``burst`` of them at once."""

    per_minute: float
    burst: int


TIER_2 = Tier(20, 5)
TIER_3 = Tier(50, 10)
TIER_4 = Tier(100, 20)
DOCUMENTED_TIERS: Mapping[str, Tier] = MappingProxyType(
    {
        "chat.update": TIER_3,
        "chat.appendStream": TIER_4,
        "chat.startStream": TIER_2,
        "chat.stopStream": TIER_2,
        "chat.delete": TIER_3,
        "assistant.threads.setStatus": TIER_3,
    }
)


@dataclass(frozen=True, slots=True)
class SlackLimits:
    """What the fake enforces: tiers per workspace and method, posts per channel."""

    post_per_s: float = 1.0  # per channel
    post_burst: int = 3
    post_workspace: Tier | None = None  # Slack's unnamed workspace-wide posting cap
    tiers: Mapping[str, Tier] = field(default_factory=lambda: DOCUMENTED_TIERS)


DOCUMENTED = SlackLimits()


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class LimitBook:
    """The fake's buckets; ``take`` says whether a call goes through or gets a 429."""

    def __init__(self, limits: SlackLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: dict[tuple[str, ...], _Bucket] = {}

    def take(self, method: str, team: str, channel: str | None) -> int | None:
        """Count one call; None if allowed, else the Retry-After seconds of its 429."""
        checks: list[tuple[tuple[str, ...], float, int]] = []
        limits = self.limits
        if method == POST:
            if channel:
                checks.append(((team, channel, POST), limits.post_per_s, limits.post_burst))
            if limits.post_workspace is not None:
                tier = limits.post_workspace
                checks.append(((team, POST), tier.per_minute / SECONDS_PER_MINUTE, tier.burst))
        tier_of_method = limits.tiers.get(method)
        if tier_of_method is not None:
            rate = tier_of_method.per_minute / SECONDS_PER_MINUTE
            checks.append(((team, method), rate, tier_of_method.burst))
        now = self._clock()
        waits = [self._wait(key, rate, burst, now) for key, rate, burst in checks]
        if any(wait > 0 for wait in waits):
            return max(1, math.ceil(max(waits)))
        for key, _, _ in checks:
            self._buckets[key].tokens -= 1
        return None

    def _wait(self, key: tuple[str, ...], rate: float, burst: int, now: float) -> float:
        """Seconds until ``key`` has a token (0: it has one now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(burst), now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / rate
