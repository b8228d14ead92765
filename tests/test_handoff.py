"""Two cores on one PostgreSQL database, in one process (bot/handoff.py): a
conversation whose messages reach both is answered by one at a time, in stored
order, each answer seeing the whole history (whichever instance wrote it), and the
per-person limit counts across both (bot/shared_limit.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from bot.config import LimitsConfig
from bot.core import Core
from bot.handoff import Handoff, HandoffSettings, share_store
from bot.types import ChatMessage, ReplySink
from fakes.fake_model import FakeModel, Step
from storage.postgres import PostgresStore
from tests.postgres_support import postgres_schema
from tests.support import RecordingSink, core_on, message

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
