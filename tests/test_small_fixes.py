"""Small failures with their own clear outcome: an empty model answer, a dirty slash
command argument, a broken author name."""

from __future__ import annotations

import dataclasses

from bot.core import Core
from bot.texts import Texts
from fakes.fake_discord import PERM_MANAGE_GUILD, FakeDiscord
from fakes.fake_openai import FakeOpenAI, reply
from storage.sqlite import SqliteStore
from tests.support import (
    BOB,
    GENERAL,
    CoreFactory,
    RecordingSink,
    answered,
    fake_discord,
    mention,
    message,
    settle,
)
from tests.support import running_discord as running

__all__ = ["fake_discord"]  # a fixture used here

EN = Texts("en")


async def test_an_empty_model_answer_is_reported_as_empty(
    memory_core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(reply("  \n "), reply("Here it is."))
    sink = RecordingSink()
    msg = message("hello?", message_id="m-empty")
    await memory_core.handle(msg, sink)
    await settle(memory_core)
    assert sink.texts == [EN.get("error_empty_answer")]
    assert EN.get("error_bad_request") not in sink.texts  # not "refused"
    conv = msg.key.as_str()
    assert await memory_core.store.pending_turn(conv, "m-empty") is None  # marked done
    await memory_core.handle(message("again?"), sink)
    await settle(memory_core)
    assert sink.texts[-1] == "Here it is."


async def test_slash_system_argument_is_cleaned_like_a_text_command(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    dirty = "\u200bAnswer\x07 like a pi\u200brate.\u202e "
    async with running(fake_discord, memory_core):
        await fake_discord.send_interaction(
            GENERAL, BOB, "system", {"text": dirty}, permissions=PERM_MANAGE_GUILD
        )
        await fake_discord.wait_until(
            lambda: bool(fake_discord.calls_to("PATCH", r"/webhooks/.*@original")), 8.0
        )
        await fake_discord.send_message(
            GENERAL, BOB, mention(fake_discord, "ahoy?"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, GENERAL)
    (request,) = fake_openai.chat_requests
    assert request["messages"][0]["content"].startswith("Answer like a pirate.\n")


async def test_a_lone_surrogate_in_an_author_name_does_not_break_handle(
    core_factory: CoreFactory, fake_openai: FakeOpenAI, sqlite_store: SqliteStore
) -> None:
    core = await core_factory(sqlite_store)
    fake_openai.script(reply("Hello, Alice."))
    msg = dataclasses.replace(message("hi there"), author_name="Al\ud800ice")
    sink = RecordingSink()
    await core.handle(msg, sink)
    await settle(core)
    assert sink.texts == ["Hello, Alice."]
    (request,) = fake_openai.chat_requests
    assert request["messages"][-1]["content"] == "Alice: hi there"
