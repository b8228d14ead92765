"""A bounded cache of Slack user display names, filled in the background.

Nothing here runs before Slack's ack: the adapter reads only what the cache
holds (:meth:`UserNames.known`), queues lookups for the rest (:meth:`UserNames.want`,
at most :data:`MAX_LOOKUPS_PER_MESSAGE` per message, :data:`MAX_QUEUED_LOOKUPS` in
all) and starts them once the event is acked (:meth:`UserNames.fill`), at most
:data:`MAX_CONCURRENT_LOOKUPS` at a time. A later message then sees the names.
Names change rarely, so an entry lives for an hour; a failed lookup is kept for a
few minutes so a deleted or foreign user does not cost a call on every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

MAX_NAMES = 5_000
NAME_TTL_S = 3_600.0
MISS_TTL_S = 300.0
# A message with thousands of mentions must not cost thousands of users.info calls
# (Slack's Tier 4 allows about 100 a minute): the first ones are looked up, the
# others stay ids until a later message asks for them.
MAX_LOOKUPS_PER_MESSAGE = 20
MAX_CONCURRENT_LOOKUPS = 4
MAX_QUEUED_LOOKUPS = 500

Lookup = Callable[[str], Awaitable[str | None]]


class UserNames:
    """Display names by user id: read from the cache, looked up in the background."""

    def __init__(
        self,
        lookup: Lookup,
        *,
        max_size: int = MAX_NAMES,
        clock: Callable[[], float] = time.monotonic,
        per_message: int = MAX_LOOKUPS_PER_MESSAGE,
        concurrency: int = MAX_CONCURRENT_LOOKUPS,
        max_queued: int = MAX_QUEUED_LOOKUPS,
    ) -> None:
        self._lookup = lookup
        self._max = max_size
        self._clock = clock
        self._per_message = per_message
        self._concurrency = concurrency
        self._max_queued = max_queued
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._queue: deque[str] = deque()
        self._wanted: set[str] = set()  # queued or being looked up
        self._workers: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()  # nothing queued and no lookup running
        self._idle.set()
        self.skipped = 0  # ids not queued because the queue was full

    def __len__(self) -> int:
        return len(self._cache)

    def known(self, user_ids: Iterable[str]) -> dict[str, str]:
        """Names the cache holds for these ids (no I/O; unknown ids are left out)."""
        now = self._clock()
        found: dict[str, str] = {}
        for user_id in user_ids:
            entry = self._cache.get(user_id)
            if entry is not None and entry[0] > now and entry[1]:
                self._cache.move_to_end(user_id)
                found[user_id] = entry[1]
        return found

    def want(self, user_ids: Iterable[str]) -> int:
        """Queue lookups for the first ``per_message`` ids that have no fresh entry.

        Only the first ``per_message`` ids count, known or not, so the same message
        seen twice (Slack sends a mention as two events) asks for the same names.
        No I/O here; returns how many ids were queued.
        """
        now = self._clock()
        queued = 0
        for user_id in itertools.islice(user_ids, self._per_message):
            entry = self._cache.get(user_id)
            if user_id in self._wanted or (entry is not None and entry[0] > now):
                continue
            if len(self._queue) >= self._max_queued:
                self.skipped += 1
                break
            self._queue.append(user_id)
            self._wanted.add(user_id)
            self._idle.clear()
            queued += 1
        return queued

    def fill(self) -> None:
        """Start the queued lookups (the adapter calls this once an event is acked)."""
        running = sum(not task.done() for task in self._workers)
        for _ in range(min(len(self._queue), self._concurrency - running)):
            task = asyncio.create_task(self._work(), name="slack-names")
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def settled(self) -> None:
        """Wait until every queued lookup is done (they start with the next ack)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Drop the queue and stop the lookups in flight."""
        self._queue.clear()
        workers = set(self._workers)
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wanted.clear()
        self._idle.set()

    async def _work(self) -> None:
        try:
            while self._queue:
                user_id = self._queue.popleft()
                try:
                    self._store(user_id, await self._fetch(user_id))
                finally:
                    self._wanted.discard(user_id)
        finally:
            me = asyncio.current_task()
            others = [t for t in self._workers if t is not me and not t.done()]
            if not self._queue and not others:
                self._idle.set()

    async def _fetch(self, user_id: str) -> str | None:
        try:
            return await self._lookup(user_id)
        except Exception as exc:  # a name is cosmetic; never fail a message over it
            log.info("could not look up Slack user %s: %s", user_id, exc)
            return None

    def _store(self, user_id: str, name: str | None) -> None:
        ttl = NAME_TTL_S if name else MISS_TTL_S
        self._cache[user_id] = (self._clock() + ttl, name)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)


def display_name(user: Mapping[str, Any]) -> str | None:
    """The name Slack shows for a users.info ``user`` object."""
    profile = user.get("profile")
    candidates: list[Any] = []
    if isinstance(profile, Mapping):
        candidates += [profile.get("display_name"), profile.get("real_name")]
    candidates += [user.get("real_name"), user.get("name")]
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
