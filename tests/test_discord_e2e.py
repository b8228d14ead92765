"""The Discord adapter end to end: real discord.py, fake Discord, fake OpenAI, real Core.

Each test reads like a conversation: the fake gateway delivers a message (or a
slash command), and the test reads the channel as a person would, plus the REST
calls the bot made.
"""

from __future__ import annotations

import json
import logging
import re

import pytest

from adapters.discord import DiscordAdapter
from adapters.discord.sink import MAX_LEN, channel_limits
from adapters.registry import create_adapter
from bot.commands import COMMANDS
from bot.config import Config, DiscordConfig
from bot.core import Core
from bot.errors import StartupError
from bot.indicator import TYPING_DELAY_S
from fakes.fake_discord import (
    INTENT_MESSAGE_CONTENT,
    PERM_MANAGE_GUILD,
    FakeDiscord,
    thread_channel,
)
from fakes.fake_openai import FakeOpenAI, echo_last_user, reply, server_error
from tests.support import (
    ALICE,
    BOB,
    DM_CHANNEL,
    GENERAL,
    GUILD,
    HELPER_BOT,
    LOAD_CHANNELS,
    MOD_ROLE,
    OLD_THREAD,
    RANDOM,
    answered,
    bot_posts,
    discord_at,
    fake_discord,
    mention,
    settle,
    user_text,
    writes,
)
from tests.support import DISCORD_WAIT_S as WAIT_S
from tests.support import discord_texts as texts
from tests.support import running_discord as running

__all__ = ["fake_discord"]  # the fixture, used by name


async def test_mention_gets_a_reply_that_pings_nobody(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    # Slow to start, so the typing indicator shows first.
    fake_openai.script(reply("Paris is the capital of France.", ttft_s=TYPING_DELAY_S + 0.2))
    async with running(fake_discord, memory_core):
        question = await fake_discord.send_message(
            GENERAL,
            ALICE,
            mention(fake_discord, "capital of France?"),
            mentions=(fake_discord.bot,),
        )
        await answered(fake_discord, memory_core, GENERAL)
    assert texts(fake_discord, GENERAL) == ["Paris is the capital of France."]
    first_post = fake_discord.calls_to("POST", rf"/channels/{GENERAL}/messages")[0]
    assert first_post.json["message_reference"]["message_id"] == int(question["id"])
    assert first_post.json["allowed_mentions"] == {"parse": [], "replied_user": False}
    for edit in fake_discord.calls_to("PATCH", rf"/channels/{GENERAL}/messages/\d+"):
        assert edit.json["allowed_mentions"] == {"parse": []}
    # Typing shows before the first word of the answer (once: the answer ends it).
    paths = [c.path for c in fake_discord.calls if c.method == "POST"]
    assert paths.count(f"/channels/{GENERAL}/typing") == 1
    assert paths.index(f"/channels/{GENERAL}/typing") < paths.index(f"/channels/{GENERAL}/messages")
    (request,) = fake_openai.chat_requests  # the bot's own echoed message was ignored
    assert "Alice" in user_text(request) and "capital of France?" in user_text(request)
    assert fake_discord.bot["id"] not in json.dumps(request)


async def test_reply_to_the_bot_needs_no_mention(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Paris."), reply("Rome."))
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "France?"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, GENERAL)
        answer_id = bot_posts(fake_discord, GENERAL)[0]["id"]
        await fake_discord.send_message(GENERAL, BOB, "and Italy?", reply_to=answer_id)
        await answered(fake_discord, memory_core, GENERAL, 2)
    assert texts(fake_discord, GENERAL) == ["Paris.", "Rome."]
    assert "and Italy?" in user_text(fake_openai.chat_requests[1])
    # Both answers started at once: no typing call was needed.
    assert not fake_discord.calls_to("POST", rf"/channels/{GENERAL}/typing")


async def test_dm_is_answered_without_mention(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Sure, send it over."))
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(DM_CHANNEL, ALICE, "can you check my regex?")
        await answered(fake_discord, memory_core, DM_CHANNEL)
    assert texts(fake_discord, DM_CHANNEL) == ["Sure, send it over."]


async def test_thread_follow_up_needs_no_mention(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    thread = "700000000000000021"
    fake_discord.add_guild(fake_discord.guilds[GUILD])  # keep the bot a member
    fake_discord.guilds[GUILD]["threads"].append(
        thread_channel(thread, GUILD, GENERAL, "planning", owner_id=ALICE["id"])
    )
    fake_discord.channels[thread] = fake_discord.guilds[GUILD]["threads"][-1]
    fake_openai.script(reply("Tuesday works."), reply("At 10:00."))
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            thread, ALICE, mention(fake_discord, "when do we ship?"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, thread)
        await fake_discord.send_message(OLD_THREAD, ALICE, "nobody asked the bot here")
        await fake_discord.send_message(thread, BOB, "what time?")
        await answered(fake_discord, memory_core, thread, 2)
    assert texts(fake_discord, thread) == ["Tuesday works.", "At 10:00."]
    assert texts(fake_discord, OLD_THREAD) == []
    _, second = fake_openai.chat_requests
    assert "when do we ship?" in user_text(second)  # same conversation
    assert "nobody asked" not in json.dumps(second)


async def test_channels_do_not_share_history(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.reply_fn = echo_last_user
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            GENERAL,
            ALICE,
            mention(fake_discord, "the password is apple"),
            mentions=(fake_discord.bot,),
        )
        await answered(fake_discord, memory_core, GENERAL)
        await fake_discord.send_message(
            RANDOM,
            BOB,
            mention(fake_discord, "what is the password?"),
            mentions=(fake_discord.bot,),
        )
        await answered(fake_discord, memory_core, RANDOM)
    _, second = fake_openai.chat_requests
    assert "apple" not in json.dumps(second)
    assert "what is the password?" in user_text(second)


async def test_auto_thread_opens_a_thread_and_answers_there(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Let's plan it."), reply("Friday then."))
    async with running(fake_discord, memory_core, auto_thread=True):
        question = await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "plan the release"), mentions=(fake_discord.bot,)
        )
        thread_id = question["id"]  # a thread started from a message takes its id
        await answered(fake_discord, memory_core, thread_id)
        await fake_discord.send_message(thread_id, ALICE, "Friday?")
        await answered(fake_discord, memory_core, thread_id, 2)
    (opened,) = fake_discord.calls_to("POST", rf"/channels/{GENERAL}/messages/\d+/threads")
    assert opened.json["name"] == "plan the release"
    assert texts(fake_discord, GENERAL) == []
    assert texts(fake_discord, thread_id) == ["Let's plan it.", "Friday then."]
    post = fake_discord.calls_to("POST", rf"/channels/{thread_id}/messages")[0]
    assert "message_reference" not in post.json
    assert "plan the release" in user_text(fake_openai.chat_requests[1])


async def test_own_and_other_bots_messages_are_ignored(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Hi Alice."))
    bot = fake_discord.bot
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            GENERAL, bot, mention(fake_discord, "talking to myself"), mentions=(bot,)
        )
        await fake_discord.send_message(
            GENERAL, HELPER_BOT, mention(fake_discord, "bot here"), mentions=(bot,)
        )
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "hi"), mentions=(bot,)
        )
        await answered(fake_discord, memory_core, GENERAL)
    assert texts(fake_discord, GENERAL)[-1] == "Hi Alice."
    (request,) = fake_openai.chat_requests
    assert "myself" not in json.dumps(request) and "bot here" not in json.dumps(request)


async def test_other_bots_are_answered_when_allowed(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Hello, fellow bot."))
    async with running(fake_discord, memory_core, allow_bots=True):
        await fake_discord.send_message(
            GENERAL, HELPER_BOT, mention(fake_discord, "status?"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, GENERAL)
    assert texts(fake_discord, GENERAL) == ["Hello, fellow bot."]


async def test_mentions_in_model_output_ping_nobody(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    loud = f"@everyone @here <@&{MOD_ROLE}> <@{ALICE['id']}> look at this"
    fake_openai.script(reply(loud))
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            GENERAL, BOB, mention(fake_discord, "shout"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, GENERAL)
    assert texts(fake_discord, GENERAL) == [loud]
    for call in writes(fake_discord, GENERAL):
        assert call.json["allowed_mentions"]["parse"] == []
        assert not call.json["allowed_mentions"].get("replied_user")
        assert "users" not in call.json["allowed_mentions"]
        assert "roles" not in call.json["allowed_mentions"]


# -- long answers, streaming, pacing ----------------------------------------------------------


def reassemble(posts: list[str], answer: str, opener: str) -> bool:
    """Whether the posts are the answer cut in order, with fences closed and reopened."""
    pos = 0
    for text in posts:
        bodies = [text]
        if text.startswith(opener):
            bodies.append(text[len(opener) :])
        bodies += [b[: -len("\n```")] for b in list(bodies) if b.endswith("\n```")]
        bodies += [b[: -len("```")] for b in list(bodies) if b.endswith("```")]
        fits = [b for b in bodies if answer.startswith(b, pos)]
        if not fits:
            return False
        pos += max(len(b) for b in fits)  # the closer/opener never matches the answer itself
    return pos == len(answer)


async def test_long_answer_with_code_is_split_with_fences_reopened(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    code = "\n".join(f"    total += values[{i}] * weights[{i}]  # step {i}" for i in range(90))
    answer = (
        "Here is the function you asked for.\n\n```python\ndef score(values, weights):\n"
        f"    total = 0\n{code}\n    return total\n```\n\nIt sums the weighted values."
    )
    assert 4400 <= len(answer) <= 4800
    fake_openai.script(reply(answer, chunks=60))
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "write score()"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, GENERAL, 3)
    posts = texts(fake_discord, GENERAL)
    assert len(posts) == 3
    assert all(len(p) <= MAX_LEN for p in posts)
    assert posts[1].startswith("```python\n")  # the code block continues, with its language
    assert posts[0].endswith("```")
    assert reassemble(posts, answer, "```python\n")


async def test_streaming_off_posts_whole_parts(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("A complete answer, posted once.", chunks=8))
    limits = channel_limits(streaming=False)
    async with running(fake_discord, memory_core, streaming=False, limits=limits):
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "hi"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, GENERAL)
    assert texts(fake_discord, GENERAL) == ["A complete answer, posted once."]
    assert fake_discord.calls_to("PATCH", rf"/channels/{GENERAL}/messages/\d+") == []


async def test_twenty_streams_keep_each_channel_within_its_rate_limit(
    no_proxy_env: None,
    monkeypatch: pytest.MonkeyPatch,
    fake_openai: FakeOpenAI,
    memory_core: Core,
) -> None:
    # Each answer streams in within half a second and needs five messages: the first
    # is posted early and edited, then four more follow. Writing as fast as possible
    # would put six writes into one channel within about a second, over Discord's
    # 5-per-5 s limit, which the fake enforces with 429s.
    fake_openai.chunks, fake_openai.chunk_interval_s = 24, 0.02
    answer = "\n\n".join(f"Paragraph {i}. " + "word " * 70 for i in range(25))
    assert 4 * MAX_LEN < len(answer) < 5 * MAX_LEN
    fake_openai.reply_fn = lambda body: answer
    async with discord_at(monkeypatch, channel_write_limit=(5, 5.0)) as fake:
        async with running(fake, memory_core, limits=None):  # Discord's real limits
            for cid in LOAD_CHANNELS:
                await fake.send_message(cid, ALICE, mention(fake, "go"), mentions=(fake.bot,))
            await fake.wait_until(
                lambda: all("".join(texts(fake, c)) == answer for c in LOAD_CHANNELS), 20.0
            )
            await settle(memory_core)
    # The fake answers a write over 5 per 5 s window in a channel with 429, as Discord
    # does, and announces the window in X-RateLimit headers on every write. Never a 429:
    # the bot stayed under the platform's limit in every channel, while each channel
    # needed more writes than one window holds.
    assert [c for c in fake.calls if c.status == 429] == []
    for cid in LOAD_CHANNELS:
        assert len(writes(fake, cid)) >= 6


# -- slash commands ---------------------------------------------------------------------------


async def test_slash_commands_answer_privately_in_the_right_conversation(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.reply_fn = echo_last_user
    texts_ = memory_core.texts
    async with running(fake_discord, memory_core):
        assert {c["name"] for c in fake_discord.commands} == set(COMMANDS)
        pirate = await fake_discord.send_interaction(
            GENERAL, BOB, "system", {"text": "Answer like a pirate."}, permissions=PERM_MANAGE_GUILD
        )
        rude = await fake_discord.send_interaction(GENERAL, ALICE, "system", {"text": "Be rude."})
        helped = await fake_discord.send_interaction(RANDOM, ALICE, "help")
        await fake_discord.wait_until(
            lambda: (
                len(fake_discord.calls_to("PATCH", r"/webhooks/\d+/[^/]+/messages/@original")) >= 3
            ),
            WAIT_S,
        )
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "ahoy?"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, GENERAL)
        await fake_discord.send_message(
            RANDOM, ALICE, mention(fake_discord, "hello?"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, RANDOM)
    callbacks = fake_discord.calls_to("POST", r"/interactions/\d+/[^/]+/callback")
    assert len(callbacks) == 3
    assert all(c.json["data"]["flags"] & 64 for c in callbacks)  # ephemeral
    answers = {
        c.path.split("/")[3]: c.json["content"]
        for c in fake_discord.calls_to("PATCH", r"/webhooks/.*@original")
    }
    assert answers == {
        pirate["token"]: texts_.get("system_set"),
        rude["token"]: texts_.get("system_denied"),  # Alice may not change it
        helped["token"]: texts_.get("help"),
    }
    general, random_ = fake_openai.chat_requests
    assert "Answer like a pirate." in json.dumps(general["messages"][0])
    assert "Answer like a pirate." not in json.dumps(random_)
    assert "ahoy?" in texts(fake_discord, GENERAL)[0]


async def test_slash_reset_forgets_only_its_own_conversation(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.reply_fn = echo_last_user
    bot = (fake_discord.bot,)
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "general fact"), mentions=bot
        )
        await answered(fake_discord, memory_core, GENERAL)
        await fake_discord.send_message(
            RANDOM, ALICE, mention(fake_discord, "random fact"), mentions=bot
        )
        await answered(fake_discord, memory_core, RANDOM)
        await fake_discord.send_interaction(RANDOM, ALICE, "reset")
        await fake_discord.wait_until(
            lambda: bool(fake_discord.calls_to("PATCH", r"/webhooks/.*@original")), WAIT_S
        )
        await settle(memory_core)
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "again G"), mentions=bot
        )
        await answered(fake_discord, memory_core, GENERAL, 2)
        await fake_discord.send_message(
            RANDOM, ALICE, mention(fake_discord, "again R"), mentions=bot
        )
        await answered(fake_discord, memory_core, RANDOM, 2)
    (done,) = fake_discord.calls_to("PATCH", r"/webhooks/.*@original")
    assert done.json["content"] == memory_core.texts.get("reset_done")
    *_, general_again, random_again = fake_openai.chat_requests
    assert "general fact" in json.dumps(general_again)
    assert "random fact" not in json.dumps(random_again)


async def test_long_command_answer_continues_in_private_follow_ups(
    fake_discord: FakeDiscord, memory_core: Core
) -> None:
    prompt = "Always answer in rhymes. " * 120  # shown back: longer than one message
    async with running(fake_discord, memory_core):
        await fake_discord.send_interaction(
            GENERAL, BOB, "system", {"text": prompt}, permissions=PERM_MANAGE_GUILD
        )
        await fake_discord.wait_until(
            lambda: bool(fake_discord.calls_to("PATCH", r"/webhooks/.*@original")), WAIT_S
        )
        await settle(memory_core)
        show = await fake_discord.send_interaction(GENERAL, ALICE, "system")
        hook = rf"/webhooks/\d+/{show['token']}(/messages/@original)?"
        await fake_discord.wait_until(
            lambda: any(re.fullmatch(hook, c.path) for c in fake_discord.calls), WAIT_S
        )
        await settle(memory_core)
    calls = [c for c in fake_discord.calls if re.fullmatch(hook, c.path)]
    assert [c.status for c in calls] == [200, 200]
    shown, follow_up = calls
    assert follow_up.method == "POST" and follow_up.json["flags"] & 64  # also private
    assert follow_up.json["allowed_mentions"] == {"parse": []}
    combined = shown.json["content"] + follow_up.json["content"]
    assert prompt.strip() in combined.replace("\n", "")


# -- start-up ---------------------------------------------------------------------------------


async def test_missing_message_content_intent_falls_back_with_a_warning(
    no_proxy_env: None,
    monkeypatch: pytest.MonkeyPatch,
    fake_openai: FakeOpenAI,
    memory_core: Core,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_openai.script(reply("Still here."))
    caplog.set_level(logging.INFO, logger="adapters.discord")
    async with discord_at(monkeypatch, allowed_intents=0) as fake:
        async with running(fake, memory_core) as adapter:
            assert not adapter.message_content
            await fake.send_message(GENERAL, ALICE, mention(fake, "hi"), mentions=(fake.bot,))
            await answered(fake, memory_core, GENERAL)
        assert texts(fake, GENERAL) == ["Still here."]
    first, second = fake.identifies
    assert first["intents"] & INTENT_MESSAGE_CONTENT
    assert not second["intents"] & INTENT_MESSAGE_CONTENT
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Privileged Gateway Intents -> Message Content" in warnings[0]
    assert "thread follow-ups" in warnings[0]


async def test_start_logs_identity_and_invite_url(
    fake_discord: FakeDiscord, memory_core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.discord")
    async with running(fake_discord, memory_core):
        pass
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"id {fake_discord.bot['id']}" in logged and "in 1 server(s)" in logged
    assert "scope=bot+applications.commands&permissions=274877975552" in logged


@pytest.mark.parametrize("where", ["rest", "gateway"])
async def test_bad_token_is_a_one_line_startup_error(
    no_proxy_env: None, monkeypatch: pytest.MonkeyPatch, memory_core: Core, where: str
) -> None:
    options = {"gateway_token": "rotated"} if where == "gateway" else {}
    async with discord_at(monkeypatch, **options) as fake:
        token = "wrong-token" if where == "rest" else None
        with pytest.raises(StartupError) as caught:
            async with running(fake, memory_core, token=token):
                pass
    message = str(caught.value)
    assert "\n" not in message and "token" in message and "DISCORD_BOT_TOKEN" in message


async def test_failed_command_sync_is_only_a_warning(
    fake_discord: FakeDiscord, memory_core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    fake_discord.fail("PUT", r"/applications/\d+/commands", status=403, times=1)
    async with running(fake_discord, memory_core):
        pass
    assert any(
        "slash commands" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )


def test_create_needs_a_token(memory_core: Core) -> None:
    assert create_adapter("discord", Config(), memory_core) is None
    adapter = create_adapter("discord", Config(discord=DiscordConfig(token="x")), memory_core)
    assert isinstance(adapter, DiscordAdapter)


# -- failures ---------------------------------------------------------------------------------


async def test_model_failure_gets_a_short_reply(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.default = server_error(500)
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "hello?"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, GENERAL)
    assert texts(fake_discord, GENERAL) == [memory_core.texts.get("error_unavailable")]
    assert len(fake_openai.chat_requests) >= 2  # retried before giving up


async def test_rate_limited_send_is_retried(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Worth the wait."))
    fake_discord.rate_limit("POST", rf"/channels/{GENERAL}/messages", retry_after=0.05)
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "hi"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, GENERAL)
    assert texts(fake_discord, GENERAL) == ["Worth the wait."]
    statuses = [c.status for c in fake_discord.calls_to("POST", rf"/channels/{GENERAL}/messages")]
    assert statuses == [429, 200]


async def test_a_channel_the_bot_may_not_write_in_costs_one_call_and_one_log_line(
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    memory_core: Core,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_openai.script(reply("This will not get through."))
    forbidden = {"message": "Missing Permissions", "code": 50013}
    fake_discord.fail("POST", rf"/channels/{GENERAL}/messages", status=403, body=forbidden, times=9)
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "hi"), mentions=(fake_discord.bot,)
        )
        posts = rf"/channels/{GENERAL}/messages"
        await fake_discord.wait_until(lambda: bool(fake_discord.calls_to("POST", posts)), WAIT_S)
        await settle(memory_core)
    # A 403 comes back the same on a retry, and so would the error notice: neither is tried.
    assert len(fake_discord.calls_to("POST", rf"/channels/{GENERAL}/messages")) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    said = [r.getMessage() for r in caplog.records if "refused to write" in r.getMessage()]
    assert len(said) == 1 and GENERAL in said[0] and "Send Messages" in said[0]


async def test_gateway_resume_keeps_the_conversation_going(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Back online."))
    async with running(fake_discord, memory_core):
        await fake_discord.drop_connection()
        await fake_discord.send_message(  # queued by the fake until the bot resumes
            GENERAL, ALICE, mention(fake_discord, "still there?"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, memory_core, GENERAL)
    assert len(fake_discord.resumes) == 1 and len(fake_discord.identifies) == 1
    assert texts(fake_discord, GENERAL) == ["Back online."]
