"""Per-conversation ordering: one lane per conversation, lanes run in parallel.

A message reserves its place in its conversation's lane the moment it arrives,
so answers come out in arrival order even though storing the user turn is
async. A lane's worker exits when its queue is empty, so memory stays bounded
by the number of conversations that are busy right now, not ever seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Slot:
    """A reserved place in a lane; filled with a job or cancelled later."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    job: Job | None = None

    def fill(self, job: Job) -> None:
        """Give the slot its work; the lane runs it when its turn comes."""
        self.job = job
        self.ready.set()

    def cancel(self) -> None:
        """Give the place up (e.g. the message was a duplicate)."""
        self.job = None
        self.ready.set()


@dataclass(slots=True)
class _Lane:
    slots: deque[Slot] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None


class Lanes:
    """Runs jobs in order within a key and concurrently across keys."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._lanes)

    def reserve(self, key: str) -> Slot:
        """Take the next place in ``key``'s lane (synchronously, so order = call order)."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        slot = Slot()
        lane.slots.append(slot)
        if lane.worker is None:
            self._idle.clear()
            lane.worker = asyncio.create_task(self._run(key, lane), name=f"lane:{key}")
        return slot

    async def _run(self, key: str, lane: _Lane) -> None:
        try:
            while lane.slots:
                slot = lane.slots[0]
                await slot.ready.wait()
                lane.slots.popleft()
                if slot.job is None:
                    continue
                try:
                    await slot.job()
                except Exception:  # one failed job must not stall the conversation
                    log.exception("job in conversation %s failed", key)
        finally:
            lane.worker = None
            if self._lanes.get(key) is lane and not lane.slots:
                del self._lanes[key]
            if not self._lanes:
                self._idle.set()

    async def drain(self) -> None:
        """Wait until every lane is empty."""
        while self._lanes:
            await self._idle.wait()
            await asyncio.sleep(0)

    def cancel_all(self) -> None:
        """Cancel the work in flight (shutdown after the grace period)."""
        for lane in list(self._lanes.values()):
            lane.slots.clear()
            if lane.worker is not None:
                lane.worker.cancel()


@dataclass(slots=True)
class _Turnstile:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holding or waiting


class KeyedLock:
    """``async with keyed(key)``: one holder per key at a time, in the order they
    asked (asyncio.Lock is fair); holders of different keys do not wait for each
    other. Only keys in use are kept, so memory follows the work in flight."""

    def __init__(self) -> None:
        self._keys: dict[str, _Turnstile] = {}

    def __len__(self) -> int:
        return len(self._keys)

    @contextlib.asynccontextmanager
    async def __call__(self, key: str) -> AsyncIterator[None]:
        turnstile = self._keys.get(key)
        if turnstile is None:
            turnstile = self._keys[key] = _Turnstile()
        turnstile.users += 1
        try:
            async with turnstile.lock:
                yield
        finally:
            turnstile.users -= 1
            if not turnstile.users:
                del self._keys[key]
