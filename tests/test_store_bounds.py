"""The store under stress: a stalled disk, a huge conversation, a retention limit.

* A frozen file system (fakes/disk_stall.py holds every COMMIT) stalls only the
  write waiting for it: the event loop, and other conversations' answers, go on.
* A redelivered event finds its turn through an index, not a walk of the
  conversation (EXPLAIN QUERY PLAN).
* ``storage.retention_days`` deletes old turns in small batches, in the
  background, in both backends; dedupe rows keep their own retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.store import Store
from bot.types import Turn
from fakes.disk_stall import DiskStall, StatementLog, WriterGate
from fakes.fake_openai import DEFAULT_TEXT, FakeOpenAI, reply
from storage import MemoryStore, SqliteStore, sqlite_ops
from storage.postgres import PostgresStore
from storage.pruning import PRUNE_BATCH, PRUNE_INTERVAL_S
from tests.postgres_support import postgres_schema
from tests.store_support import KINDS, opened_store
from tests.support import CoreFactory, RecordingSink, message, settle

HANG_GUARD_S = 10.0  # a test that would hang fails after this instead
POLL_S = 0.005
DAY = 24 * 3600.0
NOW = 1_700_000_000.0
CONV = "test:w1:c1:-"


async def wait_until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (the guard only turns a hang into a failure)."""
    async with asyncio.timeout(HANG_GUARD_S):
        # Polled: the conditions are states of other threads and tasks, with no event.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)


async def test_a_stalled_disk_stalls_only_the_write_waiting_for_it(
    tmp_path: Path, core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    """While conversation A's first write is stuck in a frozen COMMIT, the event loop
    keeps running and conversation B's answer streams to its end; A is answered
    once the disk thaws. (With writes on the loop's thread, the loop stopped for
    the whole stall: nothing below could be observed until it ended.)"""
    stall = DiskStall(guard_s=HANG_GUARD_S)
    store = SqliteStore(str(tmp_path / "bot.db"), on_connect=stall.install)
    await store.open()
    core = await core_factory(store)
    answer_b = "one two three four five six seven eight nine ten"
    fake_openai.script(reply(answer_b, chunks=10, chunk_interval_s=0.03), reply(DEFAULT_TEXT))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(POLL_S)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    sink_a, sink_b = RecordingSink(pace_key="a"), RecordingSink(pace_key="b")
    try:
        await core.handle(message("question b", channel="b"), sink_b)
        await wait_until(lambda: bool(sink_b.messages))  # B's answer is streaming
        stall.freeze()
        msg_a = message("question a", channel="a")
        handle_a = asyncio.create_task(core.handle(msg_a, sink_a))
        await wait_until(lambda: stall.stuck >= 1)  # A's user turn: its COMMIT waits
        ticks_when_stuck = ticks
        await wait_until(lambda: sink_b.texts == [answer_b])
        assert stall.stuck >= 1 and not handle_a.done()  # all of it while A was stuck
        assert ticks > ticks_when_stuck
        assert stall.held_on and f"{os.getpid()}/MainThread" not in stall.held_on
        stall.thaw()
        await asyncio.wait_for(handle_a, HANG_GUARD_S)
        await settle(core)
        assert sink_a.texts == [DEFAULT_TEXT]
        assert sink_b.texts == [answer_b]
        context = await store.load_context(msg_a.key.as_str(), 2**62, 10)
        assert [t.content for t in context.turns] == ["question a", DEFAULT_TEXT]
    finally:
        stall.thaw()
        ticking.cancel()
        await core.close(1.0)
        await store.close()
        stall.remove()


async def test_a_redelivered_event_finds_its_turn_through_an_index(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "bot.db"))
    await store.open()
    await store.close()
    with sqlite3.connect(tmp_path / "bot.db") as db:
        plan = db.execute("EXPLAIN QUERY PLAN " + sqlite_ops.SQL_PENDING, (CONV, "m1")).fetchall()
    db.close()
    steps = [str(row[-1]) for row in plan]
    first = next(step for step in steps if " t " in f" {step} ")
    assert "turns_by_message" in first and "message_id=?" in first, steps
    assert not any(step.startswith("SCAN") for step in steps), steps


def old_and_new(count: int) -> list[Turn]:
    """``count`` turns from three days ago, then two from today."""
    turns = [
        Turn("user", f"old {n}", 1, message_id=f"o{n}", created_at=NOW - 3 * DAY)
        for n in range(count)
    ]
    return turns + [
        Turn("user", f"new {n}", 1, message_id=f"n{n}", created_at=NOW - 60) for n in range(2)
    ]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("kind", KINDS)
async def test_turns_past_the_retention_are_deleted_in_the_background(
    kind: str, tmp_path: Path
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(postgres_schema()) if kind == "postgres" else ""
        await check_retention(kind, tmp_path, url)


async def check_retention(kind: str, tmp_path: Path, url: str) -> None:
    clock = Clock()
    statements = StatementLog()
    store: Store
    if kind == "memory":
        store = MemoryStore(clock=clock, retention_days=2)
    elif kind == "postgres":
        store = PostgresStore(url, clock=clock, retention_days=2)
    else:
        path = str(tmp_path / "bot.db")
        store = SqliteStore(path, clock=clock, retention_days=2, on_connect=statements.install)
    await store.open()
    if isinstance(store, SqliteStore | PostgresStore) and store._prunes.task is not None:
        await store._prunes.task  # the prune every start begins with (nothing to do yet)
    try:
        for turn in old_and_new(PRUNE_BATCH * 2 + 10):
            assert await store.add_user_turn(CONV, turn) is not None
        everything = await store.recent_turns(CONV, 2**62, 10_000)
        assert len(everything) == PRUNE_BATCH * 2 + 12  # nothing pruned yet
        clock.now += PRUNE_INTERVAL_S + 1  # the hourly prune is due
        statements.clear()
        assert await store.claim(CONV, "a command")  # starts it; does not wait for it
        if isinstance(store, SqliteStore | PostgresStore):
            assert store._prunes.task is not None
            await asyncio.wait_for(store._prunes.task, HANG_GUARD_S)
        if isinstance(store, SqliteStore):
            batches = [
                s for s in statements.statements() if s.lstrip().startswith("DELETE FROM turns")
            ]
            assert len(batches) == 3  # 500 + 500 + 10: one short transaction each
        left = await store.recent_turns(CONV, 2**62, 10_000)
        assert [t.content for t in left] == ["new 0", "new 1"]
        # Dedupe rows outlive the turns: a redelivery of a deleted message is not new.
        assert await store.add_user_turn(CONV, old_and_new(1)[0]) is None
        assert await store.pending_turn(CONV, "o0") is None
    finally:
        await store.close()
        statements.remove()


@pytest.mark.parametrize("kind", KINDS)
async def test_retention_zero_keeps_every_turn(kind: str, tmp_path: Path) -> None:
    clock = Clock()
    async with opened_store(kind, tmp_path, clock) as store:
        for turn in old_and_new(3):
            await store.add_user_turn(CONV, turn)
        clock.now += 400 * DAY
        assert await store.prune_turns() == 0
        assert len(await store.recent_turns(CONV, 2**62, 100)) == 5


async def test_a_restart_prunes_at_once(tmp_path: Path) -> None:
    """A bot restarted more often than the prune interval still prunes."""
    path = str(tmp_path / "bot.db")
    first = SqliteStore(path, clock=Clock())
    await first.open()
    for turn in old_and_new(3):
        await first.add_user_turn(CONV, turn)
    await first.close()
    second = SqliteStore(path, clock=Clock(), retention_days=2)
    await second.open()
    try:
        assert second._prunes.task is not None  # started by open, not awaited by it
        await asyncio.wait_for(second._prunes.task, HANG_GUARD_S)
        left = await second.recent_turns(CONV, 2**62, 100)
        assert [t.content for t in left] == ["new 0", "new 1"]
    finally:
        await second.close()


async def test_a_cancelled_write_is_still_seen_once_it_commits(tmp_path: Path) -> None:
    """Cancelling the coroutine does not stop the worker's commit, and the store never
    gets to put the turn in its cache: the history read afterwards still has it, even
    with another write of ours under way meanwhile (which hides the commit from the
    inline connection's data_version check)."""
    store = SqliteStore(str(tmp_path / "bot.db"))
    await store.open()

    def says(text: str) -> Turn:
        return Turn("user", text, 1, message_id=text)

    try:
        await store.add_user_turn(CONV, says("one"))
        assert [t.content for t in await store.recent_turns(CONV, 2**62, 10)] == ["one"]
        gate = WriterGate(HANG_GUARD_S)
        blocker = asyncio.create_task(store._in_worker(gate))
        write = asyncio.create_task(store.add_user_turn(CONV, says("two")))
        await asyncio.sleep(POLL_S)  # the write waits behind the blocker
        write.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await write
        later = asyncio.create_task(store.add_user_turn(CONV, says("three")))
        await asyncio.sleep(POLL_S)
        assert [t.content for t in await store.recent_turns(CONV, 2**62, 10)] == ["one"]
        gate.open()
        await blocker
        gate.remove()
        assert await later is not None
        got = await store.recent_turns(CONV, 2**62, 10)
        assert [t.content for t in got] == ["one", "two", "three"]
    finally:
        await store.close()
