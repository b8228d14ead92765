"""The usage ledger and person-wide forgetting, on every storage backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.usage import UsageQuery, UsageRecord
from storage import SqliteStore
from tests.store_support import KINDS, AnyStore, FakeClock, answer, opened_store, user

WS = "discord:g1"
PREFIX = "discord:g1:"
CONV = "discord:g1:c1::"
OTHER_CONV = "discord:g1:c2::"
OTHER_WS_CONV = "discord:g2:c1::"

ROW = UsageRecord(
    day="2026-12-07",
    workspace=WS,
    conversation=CONV,
    person="u1",
    model="gpt-4o-mini",
    prompt_tokens=100,
    completion_tokens=20,
    estimated=False,
    cost=0.5,
    priced=True,
)


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnyStore]:
    async with opened_store(request.param, tmp_path, FakeClock()) as s:
        yield s


def month(**kw: str) -> UsageQuery:
    return UsageQuery(WS, "2026-12-01", "2027-01-01", **kw)


async def test_answers_add_up_in_their_day_row(store: AnyStore) -> None:
    await store.record_usage([ROW])
    await store.record_usage([replace(ROW, prompt_tokens=1, completion_tokens=2, cost=0.25)])
    totals = await store.usage_totals(month(person="u1"))
    assert (totals.answers, totals.prompt_tokens, totals.completion_tokens) == (2, 101, 22)
    assert totals.cost == pytest.approx(0.75)
    assert (totals.unpriced, totals.estimated) == (0, 0)


async def test_totals_pick_days_person_conversation_and_workspace(store: AnyStore) -> None:
    await store.record_usage([ROW])
    await store.record_usage([replace(ROW, day="2026-11-30")])  # last month
    await store.record_usage([replace(ROW, day="2027-01-01")])  # next month
    await store.record_usage([replace(ROW, person="u2", conversation=OTHER_CONV)])
    await store.record_usage([replace(ROW, workspace="discord:g2", conversation=OTHER_WS_CONV)])
    assert (await store.usage_totals(month())).answers == 2
    assert (await store.usage_totals(month(person="u1"))).answers == 1
    assert (await store.usage_totals(month(conversation=OTHER_CONV))).answers == 1
    today = UsageQuery(WS, "2026-12-07", "2026-12-08", person="u2")
    assert (await store.usage_totals(today)).tokens == 120
    assert (await store.usage_totals(UsageQuery(WS, "2026-10-01", "2026-11-01"))).answers == 0


async def test_estimated_and_unpriced_answers_are_counted_apart(store: AnyStore) -> None:
    await store.record_usage([ROW])
    await store.record_usage([replace(ROW, estimated=True)])
    await store.record_usage([replace(ROW, model="local", cost=0.0, priced=False)])
    totals = await store.usage_totals(month())
    assert (totals.answers, totals.estimated, totals.unpriced) == (3, 1, 1)
    assert totals.cost == pytest.approx(1.0)


async def test_top_users_are_ranked_by_tokens(store: AnyStore) -> None:
    await store.record_usage([ROW])
    await store.record_usage([replace(ROW, person="u2", prompt_tokens=1000)])
    await store.record_usage([replace(ROW, person="u3", prompt_tokens=1)])
    top = await store.top_users(month(), 2)
    assert [(person, t.tokens) for person, t in top] == [("u2", 1020), ("u1", 120)]


async def test_forget_person_deletes_their_turns_and_answers_in_the_workspace(
    store: AnyStore,
) -> None:
    mine = await store.add_user_turn(CONV, user("m1", "my secret"))
    assert mine is not None
    await store.add_assistant_turn(CONV, answer(mine, "about your secret"))
    theirs = await store.add_user_turn(CONV, replace(user("m2", "hello"), author_id="u2"))
    assert theirs is not None
    await store.add_assistant_turn(CONV, answer(theirs, "hi u2"))
    elsewhere = await store.add_user_turn(OTHER_CONV, user("m3", "also mine"))
    assert elsewhere is not None
    other_ws = await store.add_user_turn(OTHER_WS_CONV, user("m4", "other workspace"))
    assert other_ws is not None
    await store.record_usage([ROW])

    assert await store.forget_person(PREFIX, "u1") == 2

    left = await store.recent_turns(CONV, theirs, 10)
    assert [t.content for t in left] == ["hello", "hi u2"]
    assert not await store.has_turns(OTHER_CONV)
    assert [t.content for t in await store.recent_turns(OTHER_WS_CONV, other_ws, 10)] == [
        "other workspace"
    ]
    assert (await store.usage_totals(month(person="u1"))).answers == 1  # usage rows stay
    assert await store.forget_person(PREFIX, "u1") == 0


async def test_forget_person_is_not_fooled_by_a_longer_workspace_id(store: AnyStore) -> None:
    kept = await store.add_user_turn("discord:g10:c1::", user("m1", "g10 stays"))
    assert kept is not None
    assert await store.forget_person(PREFIX, "u1") == 0
    assert await store.has_turns("discord:g10:c1::")


async def test_sqlite_ledger_survives_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "usage.db")
    first = SqliteStore(path)
    await first.open()
    await first.record_usage([ROW])
    await first.close()
    again = SqliteStore(path)
    await again.open()
    try:
        assert (await again.usage_totals(month())).tokens == 120
    finally:
        await again.close()


async def test_a_batch_adds_merged_answers_in_one_call(store: AnyStore) -> None:
    merged = replace(ROW, answers=3, prompt_tokens=300, priced=False, cost=0.0)
    await store.record_usage([merged, replace(ROW, person="u2")])
    totals = await store.usage_totals(month(person="u1"))
    assert (totals.answers, totals.prompt_tokens, totals.unpriced) == (3, 300, 3)
    assert (await store.usage_totals(month())).answers == 4
