"""The usage buffer: rows merged in memory, written in batches, kept on failure."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import replace

import pytest

from bot import usage_buffer
from bot.usage import UsageQuery, UsageRecord, UsageTotals
from bot.usage_buffer import UsageBuffer
from storage.memory import MemoryStore

ROW = UsageRecord(
    day="2026-12-07",
    workspace="console:w1",
    conversation="console:w1:c1::",
    person="u1",
    model="m",
    prompt_tokens=10,
    completion_tokens=5,
    estimated=False,
    cost=0.0,
    priced=False,
)
TODAY = UsageQuery("console:w1", "2026-12-07", "2026-12-08")


class FlakyLedger:
    """A memory store whose usage writes fail while ``failing`` is set."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.failing = False
        self.writes: list[int] = []  # rows per successful write

    async def record_usage(self, records: Sequence[UsageRecord]) -> None:
        if self.failing:
            raise sqlite3.OperationalError("disk I/O error")
        self.writes.append(len(records))
        await self.store.record_usage(records)

    async def usage_totals(self, query: UsageQuery) -> UsageTotals:
        return await self.store.usage_totals(query)

    async def top_users(self, query: UsageQuery, limit: int) -> list[tuple[str, UsageTotals]]:
        return await self.store.top_users(query, limit)

    async def forget_person(self, conversation_prefix: str, person: str) -> int:
        return await self.store.forget_person(conversation_prefix, person)


async def test_answers_are_merged_and_written_in_one_batch() -> None:
    ledger = FlakyLedger()
    buffer = UsageBuffer(ledger, interval_s=3600)
    for _ in range(5):
        buffer.add(ROW)
    buffer.add(replace(ROW, person="u2"))
    assert (await buffer.usage_totals(TODAY)).answers == 6  # counted before it is written
    await buffer.flush()
    assert ledger.writes == [2]  # two rows, one write
    assert (await ledger.usage_totals(TODAY)).answers == 6
    await buffer.close()


async def test_a_failed_write_is_kept_and_written_later() -> None:
    ledger = FlakyLedger()
    buffer = UsageBuffer(ledger, interval_s=3600)
    buffer.add(ROW)
    ledger.failing = True
    await buffer.flush()
    assert (await buffer.usage_totals(TODAY)).answers == 1  # still held
    buffer.add(ROW)
    ledger.failing = False
    await buffer.close()
    assert ledger.writes == [1]
    assert (await ledger.usage_totals(TODAY)).answers == 2


async def test_at_shutdown_a_failed_write_is_dropped_without_an_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    ledger = FlakyLedger()
    buffer = UsageBuffer(ledger, interval_s=3600)
    buffer.add(ROW)
    ledger.failing = True
    await buffer.close()
    assert ledger.writes == []
    assert [r.levelno for r in caplog.records if r.name == "bot.usage_buffer"] == [logging.INFO]


async def test_the_rows_held_are_bounded_and_a_drop_is_reported_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(usage_buffer, "MAX_PENDING_ROWS", 2)
    ledger = FlakyLedger()
    ledger.failing = True
    buffer = UsageBuffer(ledger, interval_s=3600)
    for person in ("u1", "u2", "u3", "u4"):
        buffer.add(replace(ROW, person=person))
    await buffer.flush()
    assert (await buffer.usage_totals(TODAY)).answers == 2  # the newest two
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped == ["usage buffer full: the usage of 2 rows was dropped"]
    ledger.failing = False
    await buffer.close()
    assert [person for person, _ in await ledger.top_users(TODAY, 5)] == ["u3", "u4"]
