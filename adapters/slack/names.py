"""A bounded cache of Slack user display names (one users.info per person).

Names change rarely, so an entry lives for an hour; a failed lookup is kept
for a few minutes so a deleted or foreign user does not cost a call on every
message. Concurrent lookups of the same id share one request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

MAX_NAMES = 5_000
NAME_TTL_S = 3_600.0
MISS_TTL_S = 300.0

Lookup = Callable[[str], Awaitable[str | None]]


class UserNames:
    """Resolves user ids to display names, caching the answers."""

    def __init__(
        self,
        lookup: Lookup,
        *,
        max_size: int = MAX_NAMES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._max = max_size
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[str | None]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    async def resolve(self, user_ids: Iterable[str]) -> dict[str, str]:
        """Names for the ids that have one (unknown ids are left out)."""
        ids = sorted(set(user_ids))
        found = await asyncio.gather(*(self._name(i) for i in ids))
        return {i: name for i, name in zip(ids, found, strict=True) if name}

    async def _name(self, user_id: str) -> str | None:
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > self._clock():
            self._cache.move_to_end(user_id)
            return cached[1]
        pending = self._pending.get(user_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending[user_id] = future
        try:
            name = await self._fetch(user_id)
            self._store(user_id, name)
            future.set_result(name)
            return name
        finally:
            del self._pending[user_id]
            if not future.done():
                future.cancel()

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
