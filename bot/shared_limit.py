"""The per-person limit when several instances share one database.

Each instance's in-memory token bucket (bot/ratelimit.py) would let a person send
the limit to every instance. Here the count lives in the store
(``Coordination.count_message``): one row per person, counting messages in the
current clock minute, incremented by one atomic UPSERT, so all instances see one
count. A fixed window is what one row can hold; at a minute's edge a person may
send up to twice the limit in a short burst, which the waiting caps still bound.
The first refusal in a minute is the one that notifies (count = limit + 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .coordination import Coordination
from .ratelimit import Decision

MINUTE_S = 60.0


class SharedLimiter:
    """``per_minute`` messages per person per clock minute, counted in the store."""

    def __init__(
        self, counts: Coordination, per_minute: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._counts = counts
        self._limit = per_minute
        self._clock = clock

    async def admit(self, person: str) -> Decision:
        """Count one message of ``person``; a refusal notifies once per minute."""
        if self._limit <= 0:
            return Decision(allowed=True)
        now = self._clock()
        count = await self._counts.count_message(person, int(now // MINUTE_S))
        if count <= self._limit:
            return Decision(allowed=True)
        wait = MINUTE_S - now % MINUTE_S
        return Decision(allowed=False, notify=count == self._limit + 1, wait_s=wait)

    async def give_back(self, person: str) -> None:
        """Return one message (it turned out to be a duplicate)."""
        if self._limit > 0:
            await self._counts.uncount_message(person, int(self._clock() // MINUTE_S))
