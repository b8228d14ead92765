"""The background prune of the database stores (SQLite, PostgreSQL).

Dedupe rows past their retention go first, then turns past ``storage.retention_days``,
a batch at a time: each batch is one short statement, so a first prune of millions of
rows never holds a write lock for long and the messages' own writes go between
batches. It starts when a store opens (a bot restarted daily would otherwise never
prune) and then at most hourly, in the background: no message waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0
PRUNE_BATCH = 500


class PruneSchedule:
    """Runs ``prune`` in the background at most once per interval, one run at a time."""

    def __init__(self, clock: Callable[[], float], prune: Callable[[], Awaitable[None]]) -> None:
        self._clock = clock
        self._prune = prune
        self._next = 0.0
        self.task: asyncio.Task[None] | None = None  # the run under way, if any

    def postpone(self) -> None:
        """A prune ran now: the next is due an interval from now."""
        self._next = self._clock() + PRUNE_INTERVAL_S

    def maybe_start(self) -> None:
        """Start a run if one is due and none is under way."""
        if self._clock() < self._next or self.task is not None:
            return
        self.postpone()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel a run under way (between batches; the next start goes on from there)."""
        task = self.task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            await self._prune()
        except Exception as exc:  # the next interval tries again; nothing is lost
            log.warning("storage: pruning failed: %s", exc)
        finally:
            self.task = None


async def delete_in_batches(delete_batch: Callable[[], Awaitable[int]]) -> int:
    """Call ``delete_batch`` (deleting at most PRUNE_BATCH rows) until a batch comes
    back short; how many rows were deleted in all."""
    total = 0
    while True:
        deleted = await delete_batch()
        total += deleted
        if deleted < PRUNE_BATCH:
            break
    if total:
        log.info("storage: deleted %d turns older than the retention", total)
    return total
