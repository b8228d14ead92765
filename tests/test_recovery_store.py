"""The store's side of restart recovery, on both backends: listing cut-off turns
with where to answer them, leaving old ones, and taking messages over once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from bot.instances import STALE_AFTER_S, process_identity
from bot.store import Origin, Store, Unanswered
from bot.types import ConversationKey
from storage import MemoryStore
from tests.store_support import (
    CONV,
    KINDS,
    OTHER,
    AnyStore,
    FakeClock,
    answer,
    opened_store,
    shared_stores,
    user,
)

MINUTE = 60.0
WAIT_S = 10.0  # only reached if something hangs


@pytest.fixture(params=KINDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[AnyStore]:
    async with opened_store(request.param, tmp_path, clock) as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def query(database: str, statement: str, *args: object) -> list[tuple[object, ...]]:
    """One statement (``?`` placeholders) on a connection of its own, committed."""
    if database.startswith("postgresql://"):
        numbered = statement
        for n in range(1, statement.count("?") + 1):
            numbered = numbered.replace("?", f"${n}", 1)
        con = await asyncpg.connect(database)
        try:
            return [tuple(row) for row in await con.fetch(numbered, *args)]
        finally:
            await con.close()
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        return list(db.execute(statement, args).fetchall())


def ids(items: list[Unanswered]) -> list[str | None]:
    return [item.turn.message_id for item in items]


async def test_unanswered_lists_cut_off_turns_with_where_to_answer(
    store: Store, clock: FakeClock
) -> None:
    since = clock.now - MINUTE
    cut = await store.add_user_turn(CONV, user("m1", "lost?"), Origin('{"c":1}', is_dm=True))
    done = await store.add_user_turn(CONV, user("m2"), Origin("t2"))
    done_answer = await store.add_assistant_turn(CONV, answer(done))
    assert done_answer is not None
    await store.mark_delivered(CONV, done_answer)
    undelivered = await store.add_user_turn(OTHER, user("m3"), Origin("t3"))
    stored = replace(answer(undelivered), delivered=False)
    await store.add_assistant_turn(OTHER, stored)  # stored, its last write never landed
    await store.add_user_turn(CONV, user("m4"), Origin("t4"))
    await store.mark_done(CONV, "m4")  # failed, and the user was told
    await store.add_user_turn(CONV, user(None, "no id"), Origin("t5"))

    found = await store.unanswered(since, 10)

    assert ids(found) == ["m1", "m3"]
    first = found[0]
    assert (first.conversation, first.turn.id, first.turn.content) == (CONV, cut, "lost?")
    assert first.origin == Origin('{"c":1}', is_dm=True)
    assert first.key == ConversationKey("discord", "g1", "c1")
    assert (found[1].conversation, found[1].origin) == (OTHER, Origin("t3"))
    assert ids(await store.unanswered(since, 1)) == ["m1"]  # the bound holds


async def test_unanswered_leaves_out_turns_stored_before_the_cutoff(
    store: Store, clock: FakeClock
) -> None:
    await store.add_user_turn(CONV, user("old"), Origin("t"))
    clock.now += 20 * MINUTE
    await store.add_user_turn(CONV, user("new"), Origin("t"))
    assert ids(await store.unanswered(clock.now - 15 * MINUTE, 10)) == ["new"]


async def test_old_cut_off_turns_are_abandoned_once(store: Store, clock: FakeClock) -> None:
    start = clock.now
    await store.add_user_turn(CONV, user("old"), Origin("t"))
    answered = await store.add_user_turn(CONV, user("answered"), Origin("t"))
    answer_id = await store.add_assistant_turn(CONV, answer(answered))
    assert answer_id is not None
    await store.mark_delivered(CONV, answer_id)
    clock.now += 20 * MINUTE
    await store.add_user_turn(CONV, user("new"), Origin("t"))
    cutoff = clock.now - 15 * MINUTE

    assert await store.abandon_unanswered(start - 1, cutoff, 10) == [(CONV, "old")]
    assert await store.abandon_unanswered(start - 1, cutoff, 10) == []  # marked done
    assert await store.pending_turn(CONV, "old") is None  # a redelivery is a duplicate
    assert ids(await store.unanswered(start - 1, 10)) == ["new"]


async def test_take_over_needs_a_known_unfinished_message(store: Store) -> None:
    await store.add_user_turn(CONV, user("m1"), Origin("t"))
    await store.add_user_turn(CONV, user("m2"), Origin("t"))
    await store.mark_done(CONV, "m2")
    assert await store.take_over(CONV, "m1")  # its own: the instance that stored it
    assert not await store.take_over(CONV, "m2")
    assert not await store.take_over(CONV, "never-seen")


async def test_a_restarted_memory_store_takes_over_its_previous_run() -> None:
    store = MemoryStore()
    await store.open()
    await store.add_user_turn(CONV, user("m1"), Origin("t"))
    await store.close()
    await store.open()  # a new instance on the same data
    assert ids(await store.unanswered(0.0, 10)) == ["m1"]
    assert await store.take_over(CONV, "m1")


async def test_a_live_instance_keeps_its_message_until_its_heartbeat_is_stale(
    database: str, clock: FakeClock
) -> None:
    async with shared_stores(database, clock, 2) as (owner, other):
        await owner.add_user_turn(CONV, user("m1"), Origin("t"))
        assert not await other.take_over(CONV, "m1")  # in flight in a live instance
        assert ids(await other.unanswered(0.0, 10)) == ["m1"]
        clock.now += STALE_AFTER_S + 1  # the owner missed its beats: it died
        assert await other.take_over(CONV, "m1")
        assert await other.take_over(CONV, "m1")  # still its own


async def test_a_closed_instance_gives_its_messages_up_at_once(
    database: str, clock: FakeClock
) -> None:
    async with shared_stores(database, clock, 1) as (owner,):
        await owner.add_user_turn(CONV, user("m1"), Origin("t"))
    async with shared_stores(database, clock, 1) as (successor,):
        assert await successor.take_over(CONV, "m1")


async def test_instances_racing_for_a_message_take_it_once(database: str, clock: FakeClock) -> None:
    async with shared_stores(database, clock, 1) as (owner,):
        await owner.add_user_turn(CONV, user("m1"), Origin("t"))
    async with shared_stores(database, clock, 4) as racers:
        won = await asyncio.gather(*(r.take_over(CONV, "m1") for r in racers))
        assert sorted(won) == [False, False, False, True]
        winner = racers[won.index(True)]
        # The winner is alive: nobody takes the message from it, not even by abandoning.
        for loser in racers:
            if loser is not winner:
                assert not await loser.take_over(CONV, "m1")
                assert await loser.abandon_unanswered(0.0, clock.now + 1, 10) == []


async def test_the_heartbeat_keeps_an_instance_alive(database: str, clock: FakeClock) -> None:
    async with (
        shared_stores(database, clock, 1, heartbeat_s=0.01) as (owner,),
        shared_stores(database, clock, 1) as (other,),
    ):
        await owner.add_user_turn(CONV, user("m1"), Origin("t"))
        clock.now += STALE_AFTER_S + 1
        await asyncio.wait_for(beat_at(database, owner.instance_id, clock.now), WAIT_S)
        assert not await other.take_over(CONV, "m1")


async def beat_at(database: str, instance: str, when: float) -> None:
    """Wait until ``instance``'s heartbeat says ``when`` (another connection writes it)."""
    sql = "SELECT heartbeat FROM instances WHERE id = ?"
    while True:
        rows = await query(database, sql, instance)
        if rows and rows[0][0] == when:
            return
        await asyncio.sleep(0.01)


@pytest.mark.skipif(sys.platform != "linux", reason="pids are checked through /proc")
async def test_an_instance_whose_process_is_gone_is_forgotten_at_once(
    database: str, clock: FakeClock
) -> None:
    """A SIGKILLed process's heartbeat is still fresh; its pid tells it is gone."""
    host, _ = process_identity()
    assert host is not None
    finished = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await finished.wait()  # its pid is free now
    async with shared_stores(database, clock, 1) as (first,):
        for owner in ("killed", "alive", "elsewhere"):
            await first.add_user_turn(CONV, user(owner), Origin("t"))
    fresh = clock.now
    await query(database, "UPDATE seen SET owner = message_id")  # each its own owner
    for row in [
        ("killed", fresh, host, finished.pid),
        ("alive", fresh, host, os.getpid()),
        ("elsewhere", fresh, "another-host/pid:[1]", finished.pid),
    ]:
        await query(
            database, "INSERT INTO instances (id, heartbeat, host, pid) VALUES (?, ?, ?, ?)", *row
        )
    async with shared_stores(database, clock, 1) as (restarted,):
        assert await restarted.take_over(CONV, "killed")
        assert not await restarted.take_over(CONV, "alive")
        assert not await restarted.take_over(CONV, "elsewhere")  # its pid means nothing here
