"""Per-person message limits: a token bucket per user that never waits, only answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

PRUNE_EVERY = 1024  # new keys between sweeps of buckets that are full again


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class UserLimiter:
    """Allows ``per_minute`` messages per key in a burst, refilled evenly over a minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._new_keys = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Use one message of ``key``'s allowance: 0.0 if allowed, else seconds to wait."""
        if self._capacity <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._capacity, now)
            self._note_new_key(now)
        bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def give_back(self, key: str) -> None:
        """Return one message to ``key``'s allowance (it turned out to be a duplicate)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(self._capacity, bucket.tokens + 1.0)

    def _note_new_key(self, now: float) -> None:
        # Memory stays bounded by the people active in the last minute or so.
        self._new_keys += 1
        if self._new_keys < PRUNE_EVERY:
            return
        self._new_keys = 0
        refill = self._capacity / self._rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.at < refill}
