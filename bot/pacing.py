"""Write pacing: one token bucket per pace key (a channel, or a workspace's method).

Each key has its own bucket, so twenty busy channels each stream at their own
pace instead of queueing behind one global timer. Two kinds of waiters:

* essential writes (``acquire``) reserve the next free slot, in arrival order;
* optional writes (``acquire_optional``) take a token only when one is free and
  no essential write is waiting for it, so an answer's final text never queues
  behind other answers' intermediate edits.

``block`` holds a key for the time a platform asked (a 429's Retry-After).
Buckets that have filled up again carry no information and are dropped, so
memory follows the number of active keys.
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


@dataclass(frozen=True, slots=True)
class Pace:
    """Which bucket a write takes its token from, and that bucket's size and rate."""

    key: str
    burst: int
    rate: float  # tokens per second

    @property
    def args(self) -> tuple[str, int, float]:
        """``(key, burst, rate)``, as the Pacer's methods take them."""
        return self.key, self.burst, self.rate


@dataclass(slots=True)
class _Bucket:
    tokens: float  # may go negative: each waiter holds a reservation
    updated: float
    burst: float
    rate: float
    optional: asyncio.Lock | None = None  # optional writers take turns (FIFO)
    blocked_until: float = float("-inf")
    shift: float = 0.0  # seconds of blocks so far: sleeping reservations move back by them

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def full_at(self, now: float) -> bool:
        busy = self.optional is not None and self.optional.locked()
        return not busy and self.tokens + (now - self.updated) * self.rate >= self.burst


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
        shift = bucket.shift
        try:
            await self.sleep(-bucket.tokens / rate)
            while bucket.shift > shift:  # a block came meanwhile: move back by it
                delay, shift = bucket.shift - shift, bucket.shift
                await self.sleep(delay)
        except asyncio.CancelledError:
            bucket.tokens += 1  # hand the unused slot back
            raise

    async def acquire_optional(self, key: str, burst: int, rate: float) -> None:
        """Wait for a free token on ``key`` without reserving one: essential writes go first.

        Cancel it freely (the answer completed): nothing is held while waiting.
        """
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        bucket = self._bucket(key, float(max(1, burst)), rate, self.clock())
        if bucket.optional is None:
            bucket.optional = asyncio.Lock()
        async with bucket.optional:
            while True:
                now = self.clock()
                bucket.refill(now)
                if bucket.tokens >= 1:
                    bucket.tokens -= 1
                    return
                await self.sleep((1 - bucket.tokens) / bucket.rate)

    def try_acquire(self, key: str, burst: int, rate: float) -> bool:
        """Take a token on ``key`` if one is free now and nobody waits for it; never waits."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        bucket = self._bucket(key, float(max(1, burst)), rate, self.clock())
        if bucket.tokens < 1 or (bucket.optional is not None and bucket.optional.locked()):
            return False
        bucket.tokens -= 1
        return True

    def block(self, key: str, burst: int, rate: float, seconds: float) -> None:
        """Nothing goes out on ``key`` for ``seconds`` (the platform said so), then it refills.

        Writes already waiting keep their order; they all move back by the block.
        """
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        now = self.clock()
        bucket = self._bucket(key, float(max(1, burst)), rate, now)
        until = now + max(0.0, seconds)
        extra = until - max(bucket.blocked_until, now)  # overlapping 429s block once
        if extra <= 0:
            return
        bucket.blocked_until = until
        bucket.shift += extra
        # Start from empty after the block, not from a full burst: that is the back-off.
        bucket.tokens = min(bucket.tokens, 0.0) - extra * rate

    async def wait_unblocked(self, key: str) -> None:
        """Wait out a block on ``key`` (for a write whose token was taken earlier)."""
        bucket = self._buckets.get(key)
        while bucket is not None and bucket.blocked_until > self.clock():
            await self.sleep(bucket.blocked_until - self.clock())

    def refund(self, key: str, burst: int, rate: float) -> None:
        """Give back one token taken for a write that was not made."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        bucket = self._bucket(key, float(max(1, burst)), rate, self.clock())
        bucket.tokens = min(bucket.burst, bucket.tokens + 1)

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
        # A bucket with essential waiters has negative tokens and is never full.
        for key in idle:
            del self._buckets[key]
        self._last_prune = now
        self._prune_at = max(PRUNE_MIN_KEYS, 2 * len(self._buckets))
        if idle:
            log.debug("dropped %d idle pace buckets, %d left", len(idle), len(self._buckets))
