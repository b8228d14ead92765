"""Usage records gathered in memory and written in one transaction a second.

An answer's usage is added to a row in memory (the same row key as the store's),
and the rows go to the store together at most ``FLUSH_INTERVAL_S`` later: one
write a second instead of one per answer. Quota checks add what is still in
memory to the store's totals, so this instance never lets a quota slip; other
instances sharing the store see it within the interval. On close (Core.close)
what is left is written. The rows in memory are bounded (``MAX_PENDING_ROWS``): a
store that keeps failing loses the oldest usage, with an error in the log, rather
than memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from .failure_log import FailureLog
from .storage_guard import STORE_FAILURES
from .usage import UsageLedger, UsageQuery, UsageRecord, UsageTotals

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
MAX_PENDING_ROWS = 10_000  # distinct (workspace, day, person, conversation, model) rows


class UsageBuffer:
    """Merges records in memory and writes them to ``ledger`` in batches."""

    def __init__(self, ledger: UsageLedger, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._ledger = ledger
        self._interval_s = interval_s
        self._pending: dict[tuple[str, str, str, str, str, bool], UsageRecord] = {}
        self._writing: list[UsageRecord] = []  # taken by a flush, not committed yet
        self._flusher: asyncio.Task[None] | None = None
        self._flushing = False  # a write is under way: close() waits for it, never cuts it
        self._closing = False
        self._dropped = 0  # rows dropped since the last report (the buffer was full)
        self._failures = FailureLog(log, "usage: not recorded yet (kept, retrying)", logging.ERROR)

    def add(self, record: UsageRecord) -> None:
        """Add ``record`` to its row in memory; a flush follows within the interval."""
        held = self._pending.get(record.key)
        if held is None:
            if len(self._pending) >= MAX_PENDING_ROWS:
                del self._pending[next(iter(self._pending))]  # the oldest row
                self._dropped += 1  # reported by the next flush, in one line
            self._pending[record.key] = record
        else:
            self._pending[record.key] = _merged(held, record)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def usage_totals(self, query: UsageQuery) -> UsageTotals:
        """The store's totals plus what ``query`` picks of the rows not written yet."""
        totals = await self._ledger.usage_totals(query)
        for record in (*self._writing, *self._pending.values()):
            if query.picks(record):
                totals = totals.plus(record)
        return totals

    def _report_dropped(self) -> None:
        if self._dropped:
            log.error("usage buffer full: the usage of %d rows was dropped", self._dropped)
            self._dropped = 0

    async def flush(self, final: bool = False) -> None:
        """Write the rows in memory now; on a store failure they stay for the next try
        (``final``: at shutdown there is none, and the store's failure has been
        reported already, so they are dropped with an INFO line)."""
        self._report_dropped()
        if not self._pending:
            return
        batch = list(self._pending.values())
        self._pending.clear()
        self._writing += batch
        self._flushing = True
        try:
            await self._ledger.record_usage(batch)
            self._failures.succeeded()
        except STORE_FAILURES as exc:
            if final:
                log.info("at shutdown, the usage of %d rows was not recorded: %s", len(batch), exc)
                return
            self._failures.failed(exc)
            for record in batch:  # back into memory, merged with what came meanwhile
                held = self._pending.get(record.key)
                self._pending[record.key] = record if held is None else _merged(record, held)
        finally:
            self._flushing = False
            for record in batch:
                self._writing.remove(record)

    async def close(self) -> None:
        """Stop the timer and write what is left."""
        self._closing = True
        flusher = self._flusher
        if flusher is not None:
            if not self._flushing:
                flusher.cancel()  # only its wait: a write under way is let finish
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        await self.flush(final=True)

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self._interval_s)
            await self.flush()
        finally:
            self._flusher = None
        if self._pending and not self._closing:  # failed, or more came: another interval
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())


def _merged(first: UsageRecord, second: UsageRecord) -> UsageRecord:
    return dataclasses.replace(
        first,
        prompt_tokens=first.prompt_tokens + second.prompt_tokens,
        completion_tokens=first.completion_tokens + second.completion_tokens,
        cost=first.cost + second.cost,
        answers=first.answers + second.answers,
    )
