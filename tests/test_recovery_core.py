"""Restart recovery in the core (bot/recovery.py, Core.answer_stored): a real core
on the fake OpenAI and SQLite files shared the way two processes share them."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import load_config
from bot.core import Core
from bot.instances import STALE_AFTER_S
from bot.recovery import recover, recovering
from bot.store import Origin
from bot.types import IncomingMessage, ReplySink, Turn
from fakes.fake_openai import Behaviour, FakeOpenAI, echo_last_user, reply
from storage import SqliteStore
from tests.store_support import FakeClock
from tests.support import ROOT, CoreFactory, RecordingSink, bot_env, message, run_bot, settle

NO_BEATS_S = 3600.0
MAX_AGE_S = 15 * 60.0
WAIT_S = 10.0


@contextlib.asynccontextmanager
async def instance(path: Path) -> AsyncIterator[SqliteStore]:
    """One bot process's store on a shared file."""
    store = SqliteStore(str(path), heartbeat_s=NO_BEATS_S)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def store_question(store: SqliteStore, msg: IncomingMessage, target: str) -> int:
    """What the killed process had stored before it died."""
    turn = Turn(
        "user",
        msg.text,
        1,
        author_id=msg.author_id,
        author_name=msg.author_name,
        message_id=msg.message_id,
        created_at=msg.sent_at,
    )
    turn_id = await store.add_user_turn(msg.key.as_str(), turn, Origin(target))
    assert turn_id is not None
    return turn_id


async def killed_with_a_question(path: Path) -> tuple[IncomingMessage, IncomingMessage]:
    """A question a killed process stored for "here" and never answered; a newer one."""
    lost, later = message("lost question"), message("newer question")
    async with instance(path) as dead:
        await store_question(dead, lost, "here")
    return lost, later


class SinkAdapter:
    """The adapter side of recovery only: one sink per target it knows."""

    def __init__(self, name: str, sinks: dict[str, ReplySink]) -> None:
        self.name = name
        self.sinks = sinks

    def sink_for(self, target: str) -> ReplySink | None:
        return self.sinks.get(target)

    async def start(self) -> None: ...

    async def wait_closed(self) -> None: ...

    async def stop_intake(self) -> None: ...

    async def close(self) -> None: ...


async def test_a_recovered_question_is_answered_before_newer_messages(
    core_factory: CoreFactory, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.reply_fn = echo_last_user
    lost, later = await killed_with_a_question(tmp_path / "bot.db")
    async with instance(tmp_path / "bot.db") as store:
        core: Core = await core_factory(store)
        sink = RecordingSink()
        recovering = asyncio.create_task(core.answer_stored(lost, sink))
        await asyncio.sleep(0)  # recovery has started: its place is taken
        await core.handle(later, sink)
        assert await recovering
        await settle(core)
    # The model echoes the question it was asked last (group chats name the author).
    assert sink.texts == ["Alice: lost question", "Alice: newer question"]


async def test_a_place_held_before_intake_comes_first_and_is_given_back_if_unused(
    core_factory: CoreFactory, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.reply_fn = echo_last_user
    lost, later = await killed_with_a_question(tmp_path / "bot.db")
    async with instance(tmp_path / "bot.db") as store:
        core: Core = await core_factory(store)
        sink = RecordingSink()
        async with recovering(core, max_age_minutes=15) as recovery:
            await core.handle(later, sink)  # a message while the adapters start
            await asyncio.sleep(0.2)
            assert sink.texts == []  # it waits behind the held place
            async with recovery.answering([SinkAdapter("console", {"here": sink})]):
                await settle(core)
        assert sink.texts == ["Alice: lost question", "Alice: newer question"]
        # Held again at the next start, where the adapters never come up: given back.
        await store.mark_done(lost.key.as_str(), lost.message_id)
        await store_question(store, message("lost again"), "here")
        async with recovering(core, max_age_minutes=15):
            pass
        await core.handle(message("after a failed start"), sink)
        await settle(core)
    assert sink.texts[-1] == "Alice: after a failed start"


async def test_a_live_instances_message_is_not_answered_by_another(
    core_factory: CoreFactory, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """A redelivery, or recovery, in a second instance while the first answers."""
    path = tmp_path / "bot.db"
    fake_openai.script(Behaviour(text="the only answer", chunks=3, chunk_interval_s=1.0))
    msg = message("question")
    async with instance(path) as first_store, instance(path) as second_store:
        first, second = await core_factory(first_store), await core_factory(second_store)
        first_sink, second_sink = RecordingSink(), RecordingSink()
        await first.handle(msg, first_sink)
        await fake_openai.wait_for(lambda f: f.request_count == 1)  # being answered now
        await second.handle(msg, second_sink)  # the same event, to the other instance
        assert not await second.answer_stored(msg, second_sink)
        await settle(second)
        await settle(first)
    assert first_sink.texts == ["the only answer"] and second_sink.texts == []
    assert fake_openai.request_count == 1


async def test_recover_answers_what_it_can_and_leaves_the_rest(
    core_factory: CoreFactory, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(reply("a fresh answer"))
    fresh, shown = message("never answered"), message("answered, not shown", channel="c2")
    no_target, elsewhere = message("old version", channel="c3"), message("x", channel="c4")
    async with instance(tmp_path / "bot.db") as dead:
        await store_question(dead, fresh, "here")
        shown_id = await store_question(dead, shown, "there")
        stored = Turn("assistant", "the stored answer", 3, reply_to=shown_id, delivered=False)
        await dead.add_assistant_turn(shown.key.as_str(), stored)
        await store_question(dead, no_target, "unknown")
        await dead.add_user_turn(
            elsewhere.key.as_str().replace("console", "gone", 1),
            Turn("user", "x", 1, message_id="m-gone"),
            Origin("here"),
        )
    async with instance(tmp_path / "bot.db") as store:
        core = await core_factory(store)
        here, there = RecordingSink(), RecordingSink()
        adapter = SinkAdapter("console", {"here": here, "there": there})
        result = await recover(core, [adapter], MAX_AGE_S, retry_after=())
        await settle(core)
        again = await recover(core, [adapter], MAX_AGE_S, retry_after=())
    assert (result.queued, result.skipped, result.abandoned) == (2, 2, 0)
    assert here.texts == ["a fresh answer"]
    assert there.texts == ["the stored answer"]  # shown again, not asked for again
    assert fake_openai.request_count == 1
    assert (again.queued, again.skipped) == (0, 2)  # answered ones are not listed again


async def test_max_age_0_turns_recovery_off(
    core_factory: CoreFactory, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    lost = message("never answered")
    async with instance(tmp_path / "bot.db") as dead:
        await store_question(dead, lost, "here")
    async with instance(tmp_path / "bot.db") as store:
        core = await core_factory(store)
        sink = RecordingSink()
        result = await recover(core, [SinkAdapter("console", {"here": sink})], 0.0)
        await settle(core)
        assert await store.pending_turn(lost.key.as_str(), lost.message_id) is not None
    assert (result.queued, result.skipped, result.abandoned) == (0, 0, 0)
    assert sink.texts == [] and fake_openai.request_count == 0


async def test_a_bad_max_age_stops_the_bot_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text("recovery:\n  max_age_minutes: -5\n")
    code, _, err = await run_bot(["check"], bot_env(tmp_path, BOT_CONFIG=str(config)))
    assert code == 2
    assert "recovery.max_age_minutes" in err
    shipped = load_config(str(ROOT / "config.yaml"), {"OPENAI_API_KEY": "sk-x"})
    assert shipped.recovery.max_age_minutes == 15


async def test_a_message_held_by_a_silent_instance_is_taken_once_it_goes_stale(
    core_factory: CoreFactory, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The owner died where its pid cannot be checked: its heartbeat must go stale."""
    fake_openai.reply_fn = echo_last_user
    clock = FakeClock()
    lost, later = message("lost question"), message("newer question")
    path = str(tmp_path / "bot.db")
    owner = SqliteStore(path, clock=clock, heartbeat_s=NO_BEATS_S)
    store = SqliteStore(path, clock=clock, heartbeat_s=NO_BEATS_S)
    await owner.open()
    await store.open()
    try:
        await store_question(owner, lost, "here")
        core = await core_factory(store)
        sink = RecordingSink()
        recovering = asyncio.create_task(core.answer_stored(lost, sink, retry_after=(0.3,)))
        await asyncio.sleep(0.05)  # its first try came and went
        assert not await store.take_over(lost.key.as_str(), lost.message_id)  # still held
        await core.handle(later, sink)  # waits behind the held place
        clock.now += STALE_AFTER_S + 1  # the owner missed its beats
        assert await asyncio.wait_for(recovering, WAIT_S)
        await settle(core)
    finally:
        await store.close()
        await owner.close()
    assert sink.texts == ["Alice: lost question", "Alice: newer question"]


async def test_a_store_failing_during_recovery_is_one_line_and_the_bot_goes_on(
    core_factory: CoreFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full disk at start fails recovery's first write: one line, no traceback."""
    async with instance(tmp_path / "bot.db") as store:
        core = await core_factory(store)

        async def full_disk(*_args: object) -> int:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(store, "abandon_unanswered", full_disk)
        async with (
            recovering(core, max_age_minutes=15) as recovery,
            recovery.answering([SinkAdapter("console", {})]),
        ):
            await asyncio.sleep(0.2)
    lines = [r for r in caplog.records if r.name == "bot.recovery"]
    assert [r.getMessage() for r in lines] == [
        "recovery: storage failed (database or disk is full); cut-off messages stay unanswered"
    ]
    assert lines[0].exc_info is None
