"""Fault matrix, model side: every way the model can fail, on every platform.

Each case sends one question through a real adapter (Discord gateway, Slack
Socket Mode, the console) into a real Core on SQLite while the fake OpenAI
misbehaves, then checks the four things a user relies on: a clear answer or
the catalog's error text, the adapter still running, a consistent history (user
turns kept in order, no half-written answer stored), and the next question
answered normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pytest

from adapters.console import ConsoleAdapter
from adapters.discord import DiscordAdapter
from bot.adapter import Adapter
from bot.config import ConsoleConfig
from bot.core import Core
from bot.texts import Texts
from bot.types import ConversationKey
from fakes.fake_discord import FakeDiscord
from fakes.fake_openai import (
    DEFAULT_TEXT,
    Behaviour,
    FakeOpenAI,
    context_too_long,
    dropped,
    malformed,
    rate_limited,
    server_error,
    slow_first_token,
)
from fakes.fake_slack import FakeSlack
from storage.sqlite import SqliteStore
from tests.support import (
    ALICE,
    GENERAL,
    GUILD,
    CoreFactory,
    SlackChat,
    answered,
    assert_history_consistent,
    assert_running,
    bot_posts,
    discord_at,
    history,
    mention,
    running_discord,
    running_slack,
    settle,
    until,
)
from tests.support import discord_texts as texts

PLATFORMS = ("discord", "slack", "console")
FIRST = "first question"
SECOND = "second question"
PARTIAL_TEXT = "one two three four five six seven eight"
DISCORD_KEY = ConversationKey("discord", GUILD, GENERAL)
CONSOLE_KEY = ConversationKey("console", "local", "default")


# -- the faults ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """What the fake model does to the first question, and what the user must see."""

    name: str
    script: tuple[Behaviour, ...]
    attempts: int  # requests the first question costs (retries included)
    error: str | None = None  # catalog key of the reply; None: a normal answer
    partial: bool = False  # text arrived before the failure and stays visible
    core: dict[str, Any] = field(default_factory=dict)  # make_core overrides


def _cut(behaviour: Behaviour) -> Behaviour:
    """The same behaviour streaming PARTIAL_TEXT in small pieces."""
    return replace(behaviour, text=PARTIAL_TEXT, chunks=8)


FAULTS = (
    Fault("429_then_ok", (rate_limited(0.05),), attempts=2),
    Fault("429_persistent", (rate_limited(0.05),) * 3, 3, "error_rate_limited"),
    Fault("500_persistent", (server_error(500),) * 3, 3, "error_unavailable"),
    Fault("400_context_too_long", (context_too_long(),), 1, "error_context_too_long"),
    Fault(
        "no_first_token",
        (slow_first_token(3.0),),
        1,
        "error_timeout",
        core={"request_timeout_s": 1.0, "max_retries": 0},
    ),
    Fault("dropped_mid_stream", (_cut(dropped(3)),), 1, "error_interrupted", partial=True),
    Fault("malformed_before_text_then_ok", (malformed(0),), attempts=2),
    Fault("malformed_before_text_twice", (malformed(0),) * 2, 2, "error_unavailable"),
    Fault("malformed_after_text", (_cut(malformed(3)),), 1, "error_interrupted", partial=True),
)


# -- one conversation on each platform ----------------------------------------------------


class Chat(Protocol):
    """One conversation on one platform, driven the way a person would."""

    @property
    def adapter(self) -> Adapter: ...

    @property
    def key(self) -> ConversationKey: ...

    async def ask(self, text: str) -> list[str]:
        """Send ``text``; return the bot's messages for it once it is done writing."""
        ...


@dataclass
class DiscordChat:
    fake: FakeDiscord
    core: Core
    adapter: DiscordAdapter
    key: ConversationKey = DISCORD_KEY

    async def ask(self, text: str) -> list[str]:
        before = len(bot_posts(self.fake, GENERAL))
        await self.fake.send_message(
            GENERAL, ALICE, mention(self.fake, text), mentions=(self.fake.bot,)
        )
        await answered(self.fake, self.core, GENERAL, before + 1)
        return texts(self.fake, GENERAL)[before:]


@dataclass
class ConsoleChat:
    core: Core
    adapter: ConsoleAdapter
    out: io.StringIO
    stdin_fd: int
    key: ConversationKey = CONSOLE_KEY

    async def ask(self, text: str) -> list[str]:
        label = self.core.texts.get("console_answer")
        start = len(self.out.getvalue())
        os.write(self.stdin_fd, f"{text}\n".encode())

        def done() -> bool:  # a finished answer is a labelled block that ends a line
            new = self.out.getvalue()[start:]
            return new.startswith(label) and new.endswith("\n")

        await until(done, "the console answer")
        await settle(self.core)
        return [self.out.getvalue()[start:].removeprefix(label).removesuffix("\n")]


@contextlib.asynccontextmanager
async def console_chat(core: Core) -> AsyncIterator[ConsoleChat]:
    """The console adapter reading a pipe, as `python -m bot console < file` does."""
    read_fd, write_fd = os.pipe()
    stdin = os.fdopen(read_fd, "r", encoding="utf-8")
    out = io.StringIO()
    adapter = ConsoleAdapter(ConsoleConfig(), core, stdin, out)
    await adapter.start()
    try:
        yield ConsoleChat(core, adapter, out, write_fd)
    finally:
        os.close(write_fd)  # EOF: the adapter's loop ends on its own
        await asyncio.wait_for(adapter.wait_closed(), 5.0)
        stdin.close()


@contextlib.asynccontextmanager
async def chat_on(
    platform: str, core: Core, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Chat]:
    """A running adapter of ``platform`` on ``core`` and its fake platform server."""
    if platform == "discord":
        async with discord_at(monkeypatch) as discord, running_discord(discord, core) as bot:
            yield DiscordChat(discord, core, bot)
    elif platform == "slack":
        async with FakeSlack() as slack, running_slack(slack, core) as adapter:
            yield SlackChat(slack, core, adapter)
    else:
        async with console_chat(core) as chat:
            yield chat


def endings(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, content) of a chat request without its system prompt."""
    return [(m["role"], m["content"]) for m in request["messages"] if m["role"] != "system"]


def assert_first_reply(shown: list[str], fault: Fault, texts_: Texts) -> None:
    if fault.error is None:
        assert shown == [DEFAULT_TEXT]
        return
    note = texts_.get(fault.error)
    if not fault.partial:
        assert shown == [note]
        return
    (message,) = shown  # the note is appended to the partial answer, not lost
    before, sep, after = message.partition(note)
    assert sep and not after.strip()
    partial = before.rstrip()
    assert partial and PARTIAL_TEXT.startswith(partial) and partial != PARTIAL_TEXT


# -- the matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_model_fault(
    platform: str,
    fault: Fault,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    sqlite_store: SqliteStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = await core_factory(sqlite_store, **fault.core)
    fake_openai.script(*fault.script)
    async with chat_on(platform, core, monkeypatch) as chat:
        first = await chat.ask(FIRST)
        assert len(fake_openai.chat_requests) == fault.attempts
        assert_first_reply(first, fault, core.texts)
        assert [r for r, _ in endings(fake_openai.chat_requests[-1])] == ["user"]

        second = await chat.ask(SECOND)
        assert second == [DEFAULT_TEXT]
        await assert_running(chat.adapter)
        turns = await history(sqlite_store, chat.key)

    recovered = fault.error is None
    expected = [("user", FIRST)]
    expected += [("assistant", DEFAULT_TEXT)] if recovered else []
    expected += [("user", SECOND), ("assistant", DEFAULT_TEXT)]
    assert [(t.role, t.content) for t in turns] == expected
    assert_history_consistent(turns)
    # The model saw the failed question again, and never the broken partial answer.
    sent = endings(fake_openai.chat_requests[-1])
    assert [role for role, _ in sent] == [role for role, _ in expected[:-1]]
    assert sent[0][1].endswith(FIRST) and sent[-1][1].endswith(SECOND)
    assert not any(PARTIAL_TEXT[:10] in content for _, content in sent)
