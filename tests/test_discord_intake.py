"""Discord messages reach the core in gateway order within a conversation, and a
conversation whose message is still being stored holds up no other conversation.

Real discord.py over the fake Discord; the store is a real SQLite store whose user
turns containing "slow" wait at a gate, as on a slow disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from bot.core import Core
from fakes.fake_discord import FakeDiscord
from fakes.fake_openai import FakeOpenAI, echo_last_user
from tests.failing_store import BrokenDiskStore
from tests.support import (
    ALICE,
    BOB,
    DISCORD_WAIT_S,
    GENERAL,
    RANDOM,
    answered,
    bot_posts,
    discord_at,
    mention,
    running_discord,
    until,
    user_text,
)
from tests.support import discord_texts as texts

CoreFactory = Callable[..., Awaitable[Core]]
SLOW = "slow"
SLOW_FIRST = f"{SLOW} first"


@pytest_asyncio.fixture
async def slow_store(tmp_path: Path) -> AsyncIterator[BrokenDiskStore]:
    store = BrokenDiskStore(str(tmp_path / "bot.db"))
    store.gate, store.gate_text = asyncio.Event(), SLOW
    await store.open()
    yield store
    store.gate.set()
    await store.close()


def said(fake: FakeDiscord, channel: str) -> list[str]:
    """The bot's posts in a channel: each echoes a question, after its author's name."""
    return [text.split(": ", 1)[-1] for text in texts(fake, channel)]


async def ask(fake: FakeDiscord, channel: str, author: dict[str, str], text: str) -> None:
    await fake.send_message(channel, author, mention(fake, text), mentions=(fake.bot,))


@pytest_asyncio.fixture
async def held(
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    slow_store: BrokenDiskStore,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy_env: None,
) -> AsyncIterator[tuple[FakeDiscord, Core]]:
    """The bot running, Alice's "slow first" in #general held at the store's gate."""
    fake_openai.reply_fn = echo_last_user
    core = await core_factory(slow_store)
    async with discord_at(monkeypatch) as fake, running_discord(fake, core):
        await ask(fake, GENERAL, ALICE, SLOW_FIRST)
        await until(lambda: slow_store.waiting == 1, "the slow message at the gate")
        yield fake, core


async def first_post(fake: FakeDiscord, channel: str) -> None:
    await fake.wait_until(lambda: bool(bot_posts(fake, channel)), DISCORD_WAIT_S)


def release(store: BrokenDiskStore) -> None:
    assert store.gate is not None
    store.gate.set()


async def test_a_message_held_by_the_store_does_not_hold_another_channels_message(
    held: tuple[FakeDiscord, Core], slow_store: BrokenDiskStore
) -> None:
    fake, core = held
    await ask(fake, RANDOM, BOB, "quick question")
    await first_post(fake, RANDOM)
    assert said(fake, RANDOM) == ["quick question"]
    assert bot_posts(fake, GENERAL) == []
    release(slow_store)
    await answered(fake, core, GENERAL)
    assert said(fake, GENERAL) == [SLOW_FIRST]


async def test_a_later_message_in_the_same_channel_is_stored_after_a_held_one(
    held: tuple[FakeDiscord, Core], slow_store: BrokenDiskStore, fake_openai: FakeOpenAI
) -> None:
    fake, core = held
    await ask(fake, GENERAL, BOB, "then second")
    # Gateway events arrive in order: once this is answered, "then second" has
    # reached the bot too, and would be stored by now if nothing kept it waiting.
    await ask(fake, RANDOM, BOB, "marker")
    await first_post(fake, RANDOM)
    release(slow_store)
    await answered(fake, core, GENERAL, 2)
    assert said(fake, GENERAL) == [SLOW_FIRST, "then second"]
    general = [r for r in fake_openai.chat_requests if "marker" not in user_text(r)]
    assert "then second" not in user_text(general[0])
    second = user_text(general[1])
    assert second.index(SLOW_FIRST) < second.index("then second")
