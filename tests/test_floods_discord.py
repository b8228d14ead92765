"""A flood in a Discord channel, end to end: real discord.py, fake Discord, fake OpenAI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from bot.core import Core
from bot.texts import Texts
from bot.types import ConversationKey, IncomingMessage, ReplySink
from fakes.fake_discord import FakeDiscord, JsonDict
from fakes.fake_openai import FakeOpenAI, echo_last_user, reply
from tests.support import (
    ALICE,
    BOB,
    GENERAL,
    GUILD,
    CoreFactory,
    bot_posts,
    fake_discord,
    mention,
    settle,
)
from tests.support import running_discord as running

__all__ = ["fake_discord"]  # the fixture, used by name

EN = Texts("en")
FLOOD = 60
WAIT_S = 10.0


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def count_handled(core: Core) -> Callable[[], int]:
    """Count the messages the adapter has handed to the core (and the core finished)."""
    done = 0
    handle = core.handle

    async def counting(msg: IncomingMessage, sink: ReplySink) -> None:
        nonlocal done
        try:
            await handle(msg, sink)
        finally:
            done += 1

    core.handle = counting  # type: ignore[method-assign]
    return lambda: done


def asker(post: JsonDict) -> str | None:
    """Whose message a bot post replies to."""
    replied = post.get("referenced_message") or {}
    return str((replied.get("author") or {}).get("id")) if replied else None


async def test_a_flooders_sixty_mentions_do_not_bury_someone_elses_question(
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = await core_factory(
        user_messages_per_minute=20,
        max_waiting_per_conversation=20,
        max_waiting_per_person=3,
        first_token_timeout_s=30.0,
        request_timeout_s=60.0,
    )
    handled = count_handled(core)
    fake_openai.script(*(reply(echo_last_user) for _ in range(FLOOD + 1)))
    fake_openai.gate.clear()  # the model is slow: the first answer is still coming
    conv = ConversationKey("discord", GUILD, GENERAL).as_str()
    async with running(fake_discord, core):
        for i in range(FLOOD):
            await fake_discord.send_message(
                GENERAL, ALICE, mention(fake_discord, f"spam {i}"), mentions=(fake_discord.bot,)
            )
        await fake_discord.send_message(
            GENERAL, BOB, mention(fake_discord, "what time is it?"), mentions=(fake_discord.bot,)
        )
        await until(lambda: handled() == FLOOD + 1, "every message to reach the core")
        # The notice is out while every answer is still held: it did not queue.
        await until(lambda: len(bot_posts(fake_discord, GENERAL)) == 1, "the notice")
        stored = [t.content for t in await core.store.recent_turns(conv, 10**9, 100)]
        assert stored == ["spam 0", "spam 1", "spam 2", "what time is it?"]
        fake_openai.gate.set()
        await until(lambda: len(bot_posts(fake_discord, GENERAL)) == 5, "four answers")
        await settle(core)
    posts = bot_posts(fake_discord, GENERAL)
    notice, answers = posts[0], posts[1:]
    # One notice in the minute, not 40: the first limit she hit (the waiting cap, at
    # her fourth message) tells her; the per-minute limit at her 21st stays quiet.
    assert notice["content"] == EN.get("too_many_waiting", count=3)
    assert asker(notice) == ALICE["id"]
    # Bob's question waited behind three of Alice's messages, not behind twenty.
    assert [asker(p) for p in answers] == [ALICE["id"]] * 3 + [BOB["id"]]
    assert "what time is it?" in answers[-1]["content"]
    assert fake_openai.request_count == 4
