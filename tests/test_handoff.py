"""Two cores on one PostgreSQL database, in one process (bot/handoff.py): a
conversation whose messages reach both is answered by one at a time, in stored
order, each answer seeing the whole history (whichever instance wrote it), and the
per-person limit counts across both (bot/shared_limit.py). A database outage
mid-answer strands nothing: once it is back every stored question is answered,
once and in order."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bot.config import LimitsConfig
from bot.core import Core
from bot.handoff import Handoff, HandoffSettings, share_store
from bot.store import Origin
from bot.types import ChatMessage, ConversationKey, ReplySink, Turn
from fakes.fake_model import FakeModel, Step
from storage.postgres import PostgresStore
from tests.postgres_support import ADMIN_URL, admin_connection, postgres_schema
from tests.support import RecordingSink, core_on, message, settle

WAIT_S = 20.0  # only reached if something hangs
SETTINGS = HandoffSettings(failover_s=30.0, max_age_s=900.0)


def numbered(messages: list[ChatMessage]) -> Sequence[str]:
    """ "<question> after <n>": n = the earlier questions the prompt's history holds."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    return [f"{users[-1].split(': ')[-1]} after {len(users) - 1}"]


class Platform:
    """The adapter both instances answer through: a sink per reply target."""

    name = "console"

    def __init__(self) -> None:
        self.sinks: dict[str, RecordingSink] = {}

    def sink(self, target: str) -> RecordingSink:
        return self.sinks.setdefault(target, RecordingSink())

    async def start(self) -> None:
        """Nothing to connect."""

    async def wait_closed(self) -> None:
        await asyncio.Event().wait()

    async def stop_intake(self) -> None:
        """Nothing to stop."""

    async def close(self) -> None:
        """Nothing to close."""

    def sink_for(self, target: str) -> ReplySink | None:
        return self.sink(target)


@contextlib.asynccontextmanager
async def two_instances(
    model: FakeModel, platform: Platform, per_minute: int = 0
) -> AsyncIterator[list[Core]]:
    async with postgres_schema() as url, contextlib.AsyncExitStack() as stack:
        cores = []
        for _ in range(2):
            store = PostgresStore(url)
            await store.open()
            stack.push_async_callback(store.close)
            core = core_on(model, store)
            stack.push_async_callback(core.close, 1.0)
            limits = dataclasses.replace(LimitsConfig(), user_messages_per_minute=per_minute)
            handoff = await share_store(core, SETTINGS, limits)
            assert isinstance(handoff, Handoff)
            await stack.enter_async_context(handoff.sweeping([platform]))
            cores.append(core)
        yield cores


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def ask(core: Core, platform: Platform, text: str, author: str = "alice") -> None:
    msg = dataclasses.replace(message(text, author=author), reply_target="thread-1")
    await core.handle(msg, platform.sink("thread-1"))


async def test_a_conversation_split_over_two_instances_is_answered_in_order_once() -> None:
    gate = asyncio.Event()
    model = FakeModel(Step(respond=numbered, gate=gate), default=Step(respond=numbered))
    platform = Platform()
    async with two_instances(model, platform) as (first, second):
        for n in range(6):  # alternately, while the first answer waits on the model
            await ask((first, second)[n % 2], platform, f"q{n}")
        gate.set()
        sink = platform.sink("thread-1")
        await until(lambda: len(sink.texts) >= 6)
        await ask(second, platform, "q6")  # later, to whoever is free: history holds all
        await ask(first, platform, "q7")
        await until(lambda: len(sink.texts) >= 8)
        await asyncio.sleep(0.2)  # a second answer to anything would show by now
        assert sink.texts == [f"q{n} after {n}" for n in range(8)]


async def test_the_per_person_limit_counts_across_instances() -> None:
    model = FakeModel(default=Step(respond=numbered))
    platform = Platform()
    async with two_instances(model, platform, per_minute=3) as (first, second):
        for n in range(6):
            await ask((first, second)[n % 2], platform, f"q{n}")
        sink = platform.sink("thread-1")
        await until(lambda: len(sink.texts) >= 4)  # three answers and one notice
        await asyncio.sleep(0.2)
        answers = [t for t in sink.texts if " after " in t]
        assert answers == ["q0 after 0", "q1 after 1", "q2 after 2"]
        assert len(sink.texts) == 4  # told once, not once per instance


async def test_a_turn_of_a_platform_not_run_here_is_logged_once_not_every_sweep(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.recovery")
    conv = ConversationKey("discord", "g1", "c1").as_str()
    async with postgres_schema() as url:
        store = PostgresStore(url)
        await store.open()
        core = core_on(FakeModel(default=Step(respond=numbered)), store)
        try:
            handoff = await share_store(core, SETTINGS, LimitsConfig())
            assert isinstance(handoff, Handoff)
            handoff.serve([Platform()])  # a console-only instance
            turn = Turn("user", "for another instance", 1, message_id="m1")
            await store.add_user_turn(conv, turn, Origin("channel-1"))
            for _ in range(3):
                await handoff.sweep()
                await settle(core)
        finally:
            await core.close(1.0)
            await store.close()
    unserved = [r for r in caplog.records if "is not running" in r.getMessage()]
    assert [r.levelno for r in unserved] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


@pytest.mark.parametrize("redeliver_to", [0, 1])
async def test_the_same_message_at_both_instances_is_answered_once(redeliver_to: int) -> None:
    model = FakeModel(default=Step(respond=numbered))
    platform = Platform()
    async with two_instances(model, platform) as cores:
        msg = dataclasses.replace(message("q0"), reply_target="thread-1")
        sink = platform.sink("thread-1")
        await asyncio.gather(cores[0].handle(msg, sink), cores[1].handle(msg, sink))
        await until(lambda: len(sink.texts) >= 1)
        await cores[redeliver_to].handle(msg, sink)  # a retry, once answered
        await asyncio.sleep(0.2)
        assert sink.texts == ["q0 after 0"]


# -- a database outage mid-answer (the database is the test's own, so it can refuse
# connections to it): the outside audit's case, one instance, a slow model and three
# questions in one thread; the first answer cannot be stored (the user is told), the
# others must then be answered once each, in order, with no new message.


# The least failover allowed: the sweep runs every 1.7 s, so a sweep alone would
# pick the conversation up several times over while the test waits.
OUTAGE_SETTINGS = HandoffSettings(failover_s=10.0, max_age_s=900.0)
# Refused this long: two sweeps and several pump retries fail, yet shorter than
# OUTAGE_SETTINGS.stale_s, so the instance never looks dead to itself.
OUTAGE_S = 4.0
# Refused longer than OUTAGE_SETTINGS.stale_s: every instance looks dead when it ends.
LONG_OUTAGE_S = OUTAGE_SETTINGS.stale_s + 2.0
SETTLE_S = 4.0  # after the answers, long enough for two sweeps to answer anything twice
SAVE_FAILED = "couldn't save this answer"


class Outage:
    """Refuses and cuts every connection to one database, then allows them again."""

    def __init__(self, admin: asyncpg.Connection, database: str) -> None:
        self._admin = admin
        self._database = database

    async def begin(self) -> None:
        await self._admin.execute(f"ALTER DATABASE {self._database} ALLOW_CONNECTIONS false")
        await self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            self._database,
        )

    async def end(self) -> None:
        await self._admin.execute(f"ALTER DATABASE {self._database} ALLOW_CONNECTIONS true")


@contextlib.asynccontextmanager
async def own_database() -> AsyncIterator[tuple[str, Outage]]:
    """A new database (an outage must not reach the other tests' one): its URL."""
    admin = await admin_connection()
    name = f"t_outage_{secrets.token_hex(6)}"
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
            yield url, Outage(admin, name)
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def instances_on(
    url: str, model: FakeModel, platform: Platform, count: int
) -> AsyncIterator[list[Core]]:
    """``count`` cores sharing the database through their handoffs, sweeping."""
    async with contextlib.AsyncExitStack() as stack:
        cores = []
        for _ in range(count):
            store = PostgresStore(url)
            await store.open()
            stack.push_async_callback(store.close)
            core = core_on(model, store)
            stack.push_async_callback(core.close, 1.0)
            handoff = await share_store(core, OUTAGE_SETTINGS, LimitsConfig())
            assert isinstance(handoff, Handoff)
            await stack.enter_async_context(handoff.sweeping([platform]))
            cores.append(core)
        yield cores


def handoff_lines(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    """The handoff's log lines about ``what``."""
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.handoff"]
    return [line for line in lines if line.startswith(f"handoff: {what}: ")]


async def test_questions_waiting_through_an_outage_are_answered_once_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.handoff")
    gate = asyncio.Event()
    model = FakeModel(Step(respond=numbered, gate=gate), default=Step(respond=numbered))
    platform = Platform()
    sink = platform.sink("thread-1")
    async with own_database() as (url, outage), instances_on(url, model, platform, 1) as [core]:
        for n in range(3):
            await ask(core, platform, f"q{n}")
        await until(lambda: model.active == 1)  # q0 waits on the model
        await outage.begin()
        gate.set()
        await until(lambda: any(SAVE_FAILED in t for t in sink.texts))
        await asyncio.sleep(OUTAGE_S)
        await outage.end()
        await until(lambda: len(sink.texts) >= 3)
        await asyncio.sleep(SETTLE_S)
        assert [t.split(" after ")[0] for t in sink.texts] == ["q0", "q1", "q2"]
        assert SAVE_FAILED in sink.texts[0]
        assert sink.texts[1:] == ["q1 after 1", "q2 after 2"]
    # Each retried every few seconds through the outage: one line when it first
    # fails and one when it works again, not one a try.
    for what in ("sweep failed", "answering stored messages failed"):
        lines = handoff_lines(caplog, what)
        assert len(lines) == 2, lines
        assert "working again" in lines[1]


async def test_after_an_outage_longer_than_failover_each_question_is_answered_once() -> None:
    """Every heartbeat is old when the database comes back: the other instance may
    take the conversation, but no question is answered by both."""
    gate = asyncio.Event()
    model = FakeModel(Step(respond=numbered, gate=gate), default=Step(respond=numbered))
    platform = Platform()
    sink = platform.sink("thread-1")
    async with own_database() as (url, outage), instances_on(url, model, platform, 2) as cores:
        for n in range(4):  # alternately: the first instance holds the conversation
            await ask(cores[n % 2], platform, f"q{n}")
        await until(lambda: model.active == 1)
        await outage.begin()
        gate.set()
        await until(lambda: any(SAVE_FAILED in t for t in sink.texts))
        await asyncio.sleep(LONG_OUTAGE_S)
        await outage.end()
        await until(lambda: len(sink.texts) >= 4)
        await asyncio.sleep(SETTLE_S)
        assert [t.split(" after ")[0] for t in sink.texts] == ["q0", "q1", "q2", "q3"]
