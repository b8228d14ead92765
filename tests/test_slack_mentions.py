"""Model output never pings anyone in Slack: every write the fake Slack receives
(post, update, startStream, appendStream, stopStream) carries neutralised mentions,
also when a mention is split across stream pieces."""

from __future__ import annotations

import re

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.mentions import SAFE_AT
from bot.core import Core
from fakes.fake_openai import FakeOpenAI, reply
from fakes.fake_slack import FakeSlack
from tests.support import SLACK_CHANNEL as CHANNEL
from tests.support import client, deliver, fake_slack, make_sink
from tests.support import running_slack as running

__all__ = ["client", "fake_slack"]  # fixtures used here

HOSTILE = (
    "Attention <!channel> and <!here|here>, also <!everyone>! Ask <!subteam^S0DEVS|@devs> "
    "or <!subteam^S0OPS>, or <@U0BOB> and <@U0ALICE|alice>. @here @everyone @Channel."
)
SAFE = (
    "Attention ＠channel and ＠here, also ＠everyone! Ask ＠devs "
    "or ＠S0OPS, or ＠U0BOB and ＠alice. ＠here ＠everyone ＠Channel."
)
MESSAGE_WRITES = ("chat.postMessage", "chat.update")  # each replaces the whole text
STREAM_WRITES = ("chat.startStream", "chat.appendStream", "chat.stopStream")  # these add up
PING = re.compile(r"<[!@][^<>]*>|(?<![\w@])@(here|channel|everyone)\b", re.IGNORECASE)


def texts_of(fake: FakeSlack, *methods: str) -> list[str]:
    return [str(c.args.get("markdown_text") or "") for c in fake.calls_to(*methods)]


def assert_nothing_pings(fake: FakeSlack) -> None:
    """No write holds a mention, and neither does a stream's text pieced together."""
    messages = texts_of(fake, *MESSAGE_WRITES)
    stream = "".join(texts_of(fake, *STREAM_WRITES))
    assert messages or stream
    for text in [*messages, stream]:
        assert PING.search(text) is None, text


async def test_split_mentions_in_a_native_stream_are_neutralised(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    sink = make_sink(client)
    pieces = ["Hi <!chan", "nel> and <@U0", "BOB|bob> and @ever", "yone", " and <!here>", "<"]
    stream_id = await sink.stream_start(pieces[0])
    for piece in pieces[1:]:
        await sink.stream_append(stream_id, piece)
    await sink.stream_stop(stream_id)
    assert fake_slack.texts(CHANNEL) == [
        f"Hi {SAFE_AT}channel and {SAFE_AT}bob and {SAFE_AT}everyone and {SAFE_AT}here<"
    ]
    assert_nothing_pings(fake_slack)
    assert len(fake_slack.calls_to("chat.appendStream")) >= 2  # held text went out later


@pytest.mark.parametrize("mode", ["native", "edits", "no streaming"])
async def test_a_model_answer_trying_to_ping_everyone_pings_no_one(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core, mode: str
) -> None:
    if mode == "edits":
        fake_slack.stream_error = "not_allowed"
    # One character per delta: every mention is split across pieces.
    fake_openai.script(reply(HOSTILE, chunks=len(HOSTILE), chunk_interval_s=0.001))
    mention, _twin = fake_slack.mention("say hello to everyone")
    async with running(fake_slack, memory_core, streaming=mode != "no streaming") as adapter:
        await deliver(fake_slack, adapter, memory_core, mention)
    assert fake_slack.texts(CHANNEL, thread_ts=mention["event"]["ts"]) == [SAFE]
    assert_nothing_pings(fake_slack)
