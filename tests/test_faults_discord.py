"""Fault matrix, Discord side: REST errors on send and edit, the gateway going away.

Real discord.py against the fake Discord, a real Core on SQLite, the fake OpenAI.
Each case ends with the answer delivered (or a clear note), the adapter running,
a consistent history and the next question answered.

Covered elsewhere, not repeated here (tests/test_discord_e2e.py):
``test_rate_limited_send_is_retried`` (429 on the first send),
``test_discord_refusing_the_answer_gets_reported`` (403 twice on send),
``test_gateway_resume_keeps_the_conversation_going`` (gateway dropped while idle).
"""

from __future__ import annotations

import pytest

from bot.core import Core
from bot.types import ConversationKey
from fakes.fake_discord import FakeDiscord
from fakes.fake_openai import DEFAULT_TEXT, FakeOpenAI, reply
from storage.sqlite import SqliteStore
from tests.support import (
    ALICE,
    GENERAL,
    GUILD,
    CoreFactory,
    answered,
    assert_history_consistent,
    assert_running,
    bot_posts,
    discord_at,
    history,
    mention,
)
from tests.support import discord_texts as texts
from tests.support import running_discord as running

STREAMED = "The answer arrives in pieces, so the first message is edited several times."
SLOW = {"chunks": 8, "chunk_interval_s": 0.03}  # long enough for edits to happen
KEY = ConversationKey("discord", GUILD, GENERAL)
SEND = ("POST", rf"/channels/{GENERAL}/messages")
EDIT = ("PATCH", rf"/channels/{GENERAL}/messages/\d+")
WAIT_S = 8.0


async def ask(fake: FakeDiscord, core: Core, text: str) -> list[str]:
    """Mention the bot in #general; the bot's messages for it once it is done."""
    before = len(bot_posts(fake, GENERAL))
    await fake.send_message(GENERAL, ALICE, mention(fake, text), mentions=(fake.bot,))
    await answered(fake, core, GENERAL, before + 1)
    return texts(fake, GENERAL)[before:]


def statuses(fake: FakeDiscord, route: tuple[str, str]) -> list[int]:
    return [c.status for c in fake.calls_to(*route)]


async def check_next_and_history(
    fake: FakeDiscord, core: Core, store: SqliteStore, first_answered: bool
) -> None:
    """The next question gets a normal answer and the stored talk reads right."""
    assert await ask(fake, core, "next question") == [DEFAULT_TEXT]
    turns = await history(store, KEY)
    roles = ["user", "assistant"] if first_answered else ["user"]
    assert [t.role for t in turns] == [*roles, "user", "assistant"]
    assert turns[0].content == "first question"
    assert turns[-1].content == DEFAULT_TEXT
    if first_answered:
        assert turns[1].content == STREAMED
    assert_history_consistent(turns)


# -- REST: one failure on send or edit, the answer still arrives whole ---------------------


@pytest.mark.parametrize(
    ("route", "status"),
    [(EDIT, 429), (SEND, 500), (EDIT, 500), (SEND, 503), (EDIT, 503)],
    ids=["edit-429", "send-500", "edit-500", "send-503", "edit-503"],
)
async def test_one_rest_failure_still_delivers_the_whole_answer(
    monkeypatch: pytest.MonkeyPatch,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    sqlite_store: SqliteStore,
    route: tuple[str, str],
    status: int,
) -> None:
    # 429: discord.py waits the JSON retry_after; 500: discord.py retries after 1 s;
    # 503: discord.py gives up at once and the core's delivery retries the write.
    core = await core_factory(sqlite_store)
    fake_openai.script(reply(STREAMED, **SLOW))
    async with discord_at(monkeypatch) as fake, running(fake, core) as adapter:
        if status == 429:
            fake.rate_limit(*route, retry_after=0.05)
        else:
            fake.fail(*route, status=status)
        assert await ask(fake, core, "first question") == [STREAMED]
        assert statuses(fake, route)[:2] == [status, 200]
        if route == SEND:  # the post that went through still replies to the question
            post = fake.calls_to(*route)[1]
            assert post.json["message_reference"]["message_id"]
            assert post.json["allowed_mentions"] == {"parse": [], "replied_user": False}
        await check_next_and_history(fake, core, sqlite_store, first_answered=True)
        await assert_running(adapter)


# -- REST: writes keep failing, the user gets a clear note instead of silence --------------


@pytest.mark.parametrize("route", [SEND, EDIT], ids=["send", "edit"])
async def test_failing_writes_end_in_a_clear_note(
    monkeypatch: pytest.MonkeyPatch,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    sqlite_store: SqliteStore,
    route: tuple[str, str],
) -> None:
    core = await core_factory(sqlite_store)
    fake_openai.script(reply(STREAMED, **SLOW))
    note = core.texts.get("error_delivery")
    async with discord_at(monkeypatch) as fake, running(fake, core) as adapter:
        fake.fail(*route, status=503, times=2)  # the write and the core's one retry
        shown = await ask(fake, core, "first question")
        assert shown[-1] == note
        if route == EDIT:  # the first message went out before the edits failed
            assert len(shown) == 2 and STREAMED.startswith(shown[0]) and shown[0] != STREAMED
        else:
            assert shown == [note]
        await check_next_and_history(fake, core, sqlite_store, first_answered=False)
        await assert_running(adapter)


# -- the gateway closes while an answer is being written -----------------------------------


@pytest.mark.parametrize(
    ("code", "abrupt"),
    [(4000, False), (1000, False), (0, True)],
    ids=["close-4000", "close-1000", "tcp-cut"],
)
async def test_gateway_drop_mid_answer_resumes_and_answers_the_next(
    monkeypatch: pytest.MonkeyPatch,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    sqlite_store: SqliteStore,
    code: int,
    abrupt: bool,
) -> None:
    core = await core_factory(sqlite_store)
    fake_openai.script(reply(STREAMED, chunks=8, chunk_interval_s=0.1))
    async with discord_at(monkeypatch) as fake, running(fake, core) as adapter:

        async def say(text: str) -> None:
            await fake.send_message(GENERAL, ALICE, mention(fake, text), mentions=(fake.bot,))

        await say("first question")
        # The answer has started (its first message is out) when the gateway goes away.
        await fake.wait_until(lambda: bool(bot_posts(fake, GENERAL)), WAIT_S)
        await fake.drop_connection(code, abrupt=abrupt)
        assert texts(fake, GENERAL) != [STREAMED]  # still being written
        await say("next question")  # sent while offline: replayed when the bot resumes
        await answered(fake, core, GENERAL, 2)
        assert texts(fake, GENERAL) == [STREAMED, DEFAULT_TEXT]
        await assert_running(adapter)
        await say("third question")  # and the conversation goes on after the reconnect
        await answered(fake, core, GENERAL, 3)
    assert len(fake.resumes) == 1 and len(fake.identifies) == 1
    turns = await history(sqlite_store, KEY)
    assert [(t.role, t.content) for t in turns] == [
        ("user", "first question"),
        ("assistant", STREAMED),
        ("user", "next question"),
        ("assistant", DEFAULT_TEXT),
        ("user", "third question"),
        ("assistant", DEFAULT_TEXT),
    ]
    assert_history_consistent(turns)
