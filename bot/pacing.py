"""Per-channel write pacing: one token bucket per pace key.

Each channel (pace key) has its own bucket, so twenty busy channels each stream
at their own pace instead of queueing behind one global timer. Waiters on one
key are served in arrival order. Buckets that have filled up again carry no
information and are dropped, so memory follows the number of active channels.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 60.0  # drop idle buckets at least this often...
PRUNE_MIN_KEYS = 256  # ...or whenever the table outgrows max(this, 2x its last size)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class _Bucket:
    tokens: float  # may go negative: each waiter holds a reservation
    updated: float
    burst: float
    rate: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def full_at(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.rate >= self.burst


class Pacer:
    """Token buckets keyed by pace key; ``clock`` and ``sleep`` can be injected."""

    def __init__(self, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.clock = clock
        self.sleep = sleep
        self._buckets: dict[str, _Bucket] = {}
        self._last_prune = clock()
        self._prune_at = PRUNE_MIN_KEYS

    def __len__(self) -> int:
        """How many keys are tracked (idle ones are dropped over time)."""
        return len(self._buckets)

    async def acquire(self, key: str, burst: int, rate: float) -> None:
        """Wait until one write on ``key`` is allowed (``burst`` at once, ``rate``/s after)."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        now = self.clock()
        self._maybe_prune(now)
        bucket = self._bucket(key, float(max(1, burst)), rate, now)
        bucket.tokens -= 1
        if bucket.tokens >= 0:
            return
        # Reserve the next free slot; later callers queue behind this one.
        try:
            await self.sleep(-bucket.tokens / rate)
        except asyncio.CancelledError:
            bucket.tokens += 1  # hand the unused slot back
            raise

    def charge(self, key: str, burst: int, rate: float) -> None:
        """Count one write on ``key`` that does not wait: later writes wait longer."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        now = self.clock()
        self._maybe_prune(now)
        self._bucket(key, float(max(1, burst)), rate, now).tokens -= 1

    def _bucket(self, key: str, burst: float, rate: float, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=burst, updated=now, burst=burst, rate=rate)
            self._buckets[key] = bucket
            return bucket
        bucket.burst, bucket.rate = burst, rate
        bucket.refill(now)
        return bucket

    def _maybe_prune(self, now: float) -> None:
        if len(self._buckets) <= self._prune_at and now - self._last_prune < PRUNE_INTERVAL_S:
            return
        idle = [key for key, bucket in self._buckets.items() if bucket.full_at(now)]
        for key in idle:
            del self._buckets[key]
        self._last_prune = now
        self._prune_at = max(PRUNE_MIN_KEYS, 2 * len(self._buckets))
        if idle:
            log.debug("dropped %d idle pace buckets, %d left", len(idle), len(self._buckets))
