"""A database outage while a conversation is answered (bot/handoff.py), on a real
PostgreSQL database the test creates so that it can refuse connections to it.

The outside audit's case: one instance, a slow model, three questions in one
thread. While the first answer waits on the model the database refuses
connections and cuts the open ones; it is allowed again a few seconds later.
The first answer cannot be stored (the user is told); the other two must then be
answered, once each and in order, with no new message to wake the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bot.config import LimitsConfig
from bot.core import Core
from bot.handoff import Handoff, HandoffSettings, share_store
from fakes.fake_model import FakeModel, Step
from storage.postgres import PostgresStore
from tests.postgres_support import ADMIN_URL, admin_connection
from tests.support import core_on
from tests.test_handoff import Platform, ask, numbered, until

# The least failover allowed: the sweep runs every 1.7 s, so a sweep alone would
# pick the conversation up several times over while the test waits.
SETTINGS = HandoffSettings(failover_s=10.0, max_age_s=900.0)
# Refused this long: two sweeps and several pump retries fail, yet shorter than
# SETTINGS.stale_s, so the instance never looks dead to itself.
OUTAGE_S = 4.0
# Refused longer than SETTINGS.stale_s: every instance looks dead when it ends.
LONG_OUTAGE_S = SETTINGS.stale_s + 2.0
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
async def instances(
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
            handoff = await share_store(core, SETTINGS, LimitsConfig())
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
    async with own_database() as (url, outage), instances(url, model, platform, 1) as [core]:
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
    async with own_database() as (url, outage), instances(url, model, platform, 2) as cores:
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
