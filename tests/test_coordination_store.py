"""The store's side of several instances on one database (bot/coordination.py):
conversation leases, waiting turns, orphaned conversations, per-person counts.
One-store behaviour on every backend; races between stores on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.coordination import Coordination
from bot.store import Origin, Unanswered
from tests.store_support import (
    CONV,
    KINDS,
    OTHER,
    AnyStore,
    FakeClock,
    answer,
    database,
    opened_store,
    shared_stores,
    user,
)

__all__ = ["database"]  # the fixture, shared with the recovery tests

STALE_S = 10.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=KINDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[AnyStore]:
    async with opened_store(request.param, tmp_path, clock) as s:
        yield s


def ids(items: list[Unanswered]) -> list[str | None]:
    return [item.turn.message_id for item in items]


async def test_every_backend_coordinates(store: AnyStore) -> None:
    assert isinstance(store, Coordination)


async def test_a_lease_is_held_again_and_released(store: AnyStore) -> None:
    assert await store.take_lease(CONV, STALE_S)
    assert await store.take_lease(CONV, STALE_S)  # its own: kept
    await store.release_lease(CONV)
    assert await store.take_lease(CONV, STALE_S)
    assert await store.alive_instances(STALE_S) == 1


async def test_waiting_turns_are_the_unanswered_ones_in_stored_order(
    store: AnyStore, clock: FakeClock
) -> None:
    first = await store.add_user_turn(CONV, user("m1"), Origin("t1", is_dm=True))
    await store.add_user_turn(CONV, user("m2"), Origin("t2"))
    await store.add_user_turn(CONV, user("m3"), Origin("t3"))
    await store.add_user_turn(OTHER, user("o1"), Origin("t4"))
    assert first is not None
    answered = await store.add_assistant_turn(CONV, replace(answer(first), delivered=False))
    assert answered is not None
    assert ids(await store.waiting_turns(CONV, 0.0, 10)) == ["m1", "m2", "m3"]  # not delivered
    await store.mark_delivered(CONV, answered)
    await store.mark_done(CONV, "m3")
    (m2,) = await store.waiting_turns(CONV, 0.0, 10)
    assert (m2.conversation, m2.turn.message_id, m2.origin) == (CONV, "m2", Origin("t2"))
    assert await store.waiting_turns(CONV, clock.now + 1, 10) == []  # stored before `since`
    assert ids(await store.waiting_turns(CONV, 0.0, 0)) == []


async def test_orphaned_lists_waiting_conversations_nobody_holds(store: AnyStore) -> None:
    await store.add_user_turn(CONV, user("m1"), Origin("t1"))
    await store.add_user_turn(OTHER, user("o1"), Origin("t2"))
    assert sorted(await store.orphaned(0.0, STALE_S, 10)) == sorted([CONV, OTHER])
    assert await store.take_lease(CONV, STALE_S)
    assert await store.orphaned(0.0, STALE_S, 10) == [OTHER]
    await store.mark_done(OTHER, "o1")
    assert await store.orphaned(0.0, STALE_S, 10) == []


async def test_a_person_is_counted_per_minute(store: AnyStore, clock: FakeClock) -> None:
    now = int(clock.now // 60)  # older minutes are pruned in the background
    assert [await store.count_message("p", now) for _ in range(3)] == [1, 2, 3]
    await store.uncount_message("p", now)
    assert await store.count_message("p", now) == 3
    assert await store.count_message("p", now + 1) == 1  # a new minute starts over
    assert await store.count_message("p", now) == 2  # a clock behind counts in the newest
    assert await store.count_message("q", now) == 1


async def test_one_live_instance_holds_a_conversation_until_its_heartbeat_is_stale(
    database: str, clock: FakeClock
) -> None:
    async with shared_stores(database, clock, 2) as (first, second):
        assert await first.take_lease(CONV, STALE_S)
        assert not await second.take_lease(CONV, STALE_S)
        await first.add_user_turn(CONV, user("m1"), Origin("t"))
        assert await second.orphaned(0.0, STALE_S, 10) == []  # held by a live instance
        assert await second.alive_instances(STALE_S) == 2
        clock.now += STALE_S + 1  # neither beat meanwhile (heartbeats are off here)
        assert await second.orphaned(0.0, STALE_S, 10) == [CONV]
        assert await second.take_lease(CONV, STALE_S)
        assert not await first.take_lease(CONV, 3600.0)  # judged by a longer silence: alive


async def test_a_released_lease_goes_to_the_next_taker(database: str, clock: FakeClock) -> None:
    async with shared_stores(database, clock, 2) as (first, second):
        assert await first.take_lease(CONV, STALE_S)
        await second.release_lease(CONV)  # not its own: nothing happens
        assert not await second.take_lease(CONV, STALE_S)
        await first.release_lease(CONV)
        assert await second.take_lease(CONV, STALE_S)


async def test_instances_racing_for_a_lease_get_it_once(database: str, clock: FakeClock) -> None:
    async with shared_stores(database, clock, 4) as racers:
        for round_ in range(5):
            conv = f"{CONV}{round_}"
            won = await asyncio.gather(*(r.take_lease(conv, STALE_S) for r in racers))
            assert sorted(won) == [False, False, False, True]


async def test_counts_are_shared_between_instances(database: str, clock: FakeClock) -> None:
    async with shared_stores(database, clock, 3) as stores:
        now = int(clock.now // 60)
        counts = await asyncio.gather(
            *(s.count_message("p", now) for s in stores for _ in range(4))
        )
        assert sorted(counts) == list(range(1, 13))
