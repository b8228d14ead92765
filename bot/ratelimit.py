"""Per-person message limits: a token bucket per user that never waits, only answers.

A person over the limit is told once per window (:data:`NOTICE_WINDOW_S`); further
messages in that window are dropped without a word, so a flood of messages costs
one notice, not one notice per message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

PRUNE_EVERY = 1024  # new keys between sweeps of buckets that are full again
NOTICE_WINDOW_S = 60.0  # the limit is per minute: one notice per person per minute


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one message: let it in, or refuse it (telling the person or not)."""

    allowed: bool
    notify: bool = False  # refused, and the first refusal in this notice window
    wait_s: float = 0.0  # refused: seconds until the next message would be allowed


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    noticed_at: float | None = None  # when this person was last told they are limited


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

    def admit(self, key: str) -> Decision:
        """Use one message of ``key``'s allowance; a refusal notifies once per window."""
        wait = self.take(key)
        if wait <= 0:
            return Decision(allowed=True)
        bucket = self._buckets[key]  # take() made it: a refusal means a limit is set
        now = bucket.at
        notify = bucket.noticed_at is None or now - bucket.noticed_at >= NOTICE_WINDOW_S
        if notify:
            bucket.noticed_at = now
        return Decision(allowed=False, notify=notify, wait_s=wait)

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
