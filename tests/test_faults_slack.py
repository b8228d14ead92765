"""Fault matrix, Slack side: Web API 429s, the Socket Mode websocket dropping, a burst.

Real slack_bolt + slack_sdk against the fake Slack, a real Core on SQLite, the
fake OpenAI. Each case ends with the answer delivered, the adapter running, a
consistent history and the next question answered.

Covered elsewhere, not repeated here (tests/test_slack_e2e.py):
``test_retries_and_redeliveries_are_answered_once`` (the same event redelivered
with retry_attempt, its twin, and a new event id: one answer),
``test_redelivery_after_restart_is_not_answered_again`` (the same across a restart),
``test_reconnects_after_the_socket_drops`` (socket dropped while idle, abrupt or
"disconnect" refresh), ``test_slack_rate_limit_is_waited_out`` (two 429s, Retry-After 0).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.types import ConversationKey
from fakes.fake_openai import DEFAULT_TEXT, FakeOpenAI, reply
from fakes.fake_slack import FakeSlack
from storage.sqlite import SqliteStore
from tests.support import (
    MARK,
    CoreFactory,
    SlackChat,
    assert_history_consistent,
    assert_running,
    deliver,
    history,
    marker_reply,
    running_slack,
)
from tests.support import SLACK_CHANNEL as CHANNEL

STREAMED = "An answer streamed in pieces, so the bot writes to its message more than once."
SLOW = {"chunks": 8, "chunk_interval_s": 0.03}  # long enough for several writes
RETRY_AFTER_S = 1  # Slack sends whole seconds
CLOCK_SLACK_S = 0.01
BURST_CONVERSATIONS = 100
BURST_PER_CONVERSATION = 10
BURST_WAIT_S = 40.0  # only reached if something is lost or stuck


async def check_next_and_history(chat: SlackChat) -> None:
    """The next question gets a normal answer and the stored talk reads right."""
    assert await chat.ask("next question") == [DEFAULT_TEXT]
    await assert_running(chat.adapter)
    turns = await history(chat.core.store, chat.key)
    assert [(t.role, t.content) for t in turns] == [
        ("user", "first question"),
        ("assistant", STREAMED),
        ("user", "next question"),
        ("assistant", DEFAULT_TEXT),
    ]
    assert_history_consistent(turns)


# -- Web API rate limits: waited out, the answer arrives whole ----------------------------

# method -> (adapter overrides, a DM?) that make the answer go through that method
RATE_LIMITED: dict[str, tuple[dict[str, Any], bool]] = {
    "chat.postMessage": ({"streaming": False}, False),  # whole parts, one post
    "chat.update": ({}, True),  # a DM: placeholder, then edits
    "chat.appendStream": ({}, False),  # a thread: native streaming
}


@pytest.mark.parametrize("method", list(RATE_LIMITED))
async def test_rate_limited_write_waits_for_retry_after(
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    sqlite_store: SqliteStore,
    method: str,
) -> None:
    overrides, dm = RATE_LIMITED[method]
    core = await core_factory(sqlite_store)
    fake_openai.script(reply(STREAMED, **SLOW))
    async with FakeSlack() as fake, running_slack(fake, core, **overrides) as adapter:
        fake.rate_limit(method, retry_after=RETRY_AFTER_S)
        chat = SlackChat(fake, core, adapter, dm=dm)
        shown = await chat.ask("first question")
        assert [s.strip() for s in shown] == [STREAMED]
        limited, retried, *_ = fake.calls_to(method)
        assert (limited.status, retried.status) == (429, 200)
        assert retried.at - limited.at >= RETRY_AFTER_S - CLOCK_SLACK_S  # honoured
        await check_next_and_history(chat)


# -- the websocket drops while an answer is being written ---------------------------------


async def test_socket_drop_mid_answer_then_redelivery_and_next_event(
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    sqlite_store: SqliteStore,
) -> None:
    core = await core_factory(sqlite_store)
    fake_openai.script(reply(STREAMED, chunks=8, chunk_interval_s=0.1))
    async with FakeSlack() as fake, running_slack(fake, core) as adapter:
        first, _ = fake.mention("first question")
        root = first["event"]["ts"]
        chat = SlackChat(fake, core, adapter, root=root)
        await fake.wait_ack(await fake.push(first))
        await fake.wait_until(lambda: bool(fake.posted(CHANNEL, root)))
        await fake.drop_sockets()  # abrupt, while the answer streams
        assert fake.texts(CHANNEL, root) != [STREAMED]  # still being written
        await fake.wait_until(lambda: fake.connections >= 2)
        # Slack redelivers an event whose ack it did not see; it must not be answered twice.
        await deliver(fake, adapter, core, first, retry_attempt=1, retry_reason="timeout")
        assert [t.strip() for t in fake.texts(CHANNEL, root)] == [STREAMED]
        await check_next_and_history(chat)
    assert len(fake_openai.chat_requests) == 2


# -- a burst: 1,000 messages in 100 conversations, none lost, each in order -------------


def markers(request: dict[str, Any], role: str) -> list[str]:
    return [
        mark
        for m in request["messages"]
        if m["role"] == role
        for mark in MARK.findall(str(m["content"]))
    ]


async def test_burst_of_1000_messages_in_100_conversations(
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    sqlite_store: SqliteStore,
) -> None:
    fake_openai.reply_fn = marker_reply
    fake_openai.chunks = 1
    core = await core_factory(sqlite_store)
    total = BURST_CONVERSATIONS * BURST_PER_CONVERSATION
    # 1,000 answers in one channel: a test of order and dedupe under a burst, not of
    # Slack's one post a second per channel (tests/test_slack_limits.py covers that).
    async with (
        FakeSlack(limits=None) as fake,
        running_slack(fake, core, streaming=False) as adapter,
    ):
        roots = [fake.next_ts() for _ in range(BURST_CONVERSATIONS)]
        # Round-robin over the conversations, as fast as the socket takes them.
        for j in range(BURST_PER_CONVERSATION):
            for i, root in enumerate(roots):
                where = {"ts": root} if j == 0 else {"thread_ts": root}
                body, _ = fake.mention(f"c{i}-m{j}", **where)
                await fake.push(body)
        await fake.wait_until(lambda: len(fake.posted(CHANNEL)) >= total, BURST_WAIT_S)
        await asyncio.wait_for(core.drain(), BURST_WAIT_S)
        await assert_running(adapter)

    assert len(fake.acks) == len(set(fake.acks)) == total
    for i, root in enumerate(roots):  # every answer, in its thread, in order, and stored
        expected = [f"c{i}-m{j}" for j in range(BURST_PER_CONVERSATION)]
        assert fake.texts(CHANNEL, root) == expected
        turns = await history(sqlite_store, ConversationKey("slack", fake.team_id, CHANNEL, root))
        assert [MARK.findall(t.content)[-1] for t in turns] == [m for m in expected for _ in "ua"]
        assert_history_consistent(turns)
    requests = fake_openai.chat_requests
    assert len(requests) == total
    for request in requests:  # each question was asked after the one before was answered
        asked = markers(request, "user")
        conv, n = asked[-1].split("-m")
        assert asked == [f"{conv}-m{k}" for k in range(int(n) + 1)]
        assert markers(request, "assistant") == asked[:-1]
