"""Busy Slack channels under Slack's real limits: real slack_bolt + slack_sdk, a real Core.

The fake Slack enforces the documented limits (fakes/slack_limits.py: tiers per
workspace and method, about one post per second per channel) and answers 429 past
them; the adapter runs with its shipped paces. Every answer must arrive whole, with
no 429 sent, and a 429 in one workspace must not hold up another.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest_asyncio

from adapters.slack.pacing import SlackPaces
from bot.core import Core
from fakes.fake_openai import FakeOpenAI, JsonDict, echo_last_user
from fakes.fake_slack import FakeSlack
from fakes.slack_limits import DOCUMENTED
from tests.support import running_slack as running

CHANNEL = "C0BUSY"
THREADS = 20
CHANNELS = 24
OTHER_TEAM = "T0OTHER"
OTHER_CHANNEL = "C0OTHER"
SAME_TEAM_CHANNEL = "C0SAME"
RETRY_AFTER_S = 2
CLOCK_SLACK_S = 0.01
# Generous bounds only reached when something is lost or stuck: 20 answers in one
# channel need about 15 s at Slack's one post per second per channel.
ALL_ANSWERED_S = 60.0
ONE_ANSWER_S = 15.0
STREAMED_CHUNKS, STREAMED_INTERVAL_S = 8, 0.03  # several writes' worth of time
MARK = re.compile(r"q-[\w-]+")


def answer(mark: str) -> str:
    """The model's whole answer to the question carrying ``mark``."""
    return f"Here is the whole answer to {mark}, written in several pieces."


def answer_to(body: JsonDict) -> str:
    """A distinct answer per question, so each thread's reply can be checked."""
    return answer(MARK.findall(echo_last_user(body))[-1])


@pytest_asyncio.fixture
async def limited_slack(no_proxy_env: None) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(limits=DOCUMENTED) as fake:
        fake.channel_teams[OTHER_CHANNEL] = OTHER_TEAM
        yield fake


def mention(fake: FakeSlack, text: str, channel: str, team: str | None = None) -> JsonDict:
    """An app_mention event body, in ``team``'s workspace."""
    team = team or fake.team_id
    event = fake.message_event(
        f"<@{fake.bot_user_id}> {text}", kind="app_mention", channel=channel, team=team
    )
    return fake.event_body(event, team_id=team)


def final_texts(fake: FakeSlack, channel: str, roots: list[str]) -> dict[str, list[str]]:
    return {root: fake.texts(channel, root) for root in roots}


def all_done(fake: FakeSlack, channel: str, expected: dict[str, str]) -> bool:
    """Every thread shows exactly its answer and no stream is left open."""
    for root, text in expected.items():
        posted = fake.posted(channel, root)
        if [p.text for p in posted] != [text] or any(p.streaming for p in posted):
            return False
    return True


async def ask_all(fake: FakeSlack, bodies: list[JsonDict]) -> None:
    for body in bodies:
        await fake.push(body)


async def test_twenty_threads_of_one_channel_all_get_their_whole_answer(
    limited_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake = limited_slack
    fake_openai.reply_fn = answer_to
    fake_openai.chunks, fake_openai.chunk_interval_s = 6, 0.02
    bodies = [mention(fake, f"q-{i}", CHANNEL) for i in range(THREADS)]
    roots = [str(b["event"]["ts"]) for b in bodies]
    expected = {root: answer(f"q-{i}") for i, root in enumerate(roots)}
    async with running(fake, memory_core, paces=SlackPaces()):
        await ask_all(fake, bodies)  # all at once, as fast as the socket takes them
        await fake.wait_until(lambda: all_done(fake, CHANNEL, expected), ALL_ANSWERED_S)
        await asyncio.wait_for(memory_core.drain(), ALL_ANSWERED_S)
    assert final_texts(fake, CHANNEL, roots) == {root: [text] for root, text in expected.items()}
    assert fake.limited == 0  # the bot kept within every limit: no 429 at all
    assert not [c for c in fake.calls if c.status == 429]
    writes = fake.calls_to(
        "chat.postMessage", "chat.startStream", "chat.appendStream", "chat.stopStream"
    )
    # Under pressure most answers went out whole in one post: fewer writes than answers x 3.
    assert len(writes) < 3 * THREADS


async def test_many_channels_at_once_all_get_their_whole_answer(
    limited_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake = limited_slack
    fake_openai.reply_fn = answer_to
    fake_openai.chunks, fake_openai.chunk_interval_s = 6, 0.02
    channels = [f"C{i:07d}" for i in range(CHANNELS)]
    bodies = [mention(fake, f"q-{c}", c) for c in channels]
    expected = {
        c: (str(b["event"]["ts"]), answer(f"q-{c}")) for c, b in zip(channels, bodies, strict=True)
    }

    def done() -> bool:
        return all(all_done(fake, c, {root: text}) for c, (root, text) in expected.items())

    async with running(fake, memory_core, paces=SlackPaces()):
        await ask_all(fake, bodies)
        await fake.wait_until(done, ALL_ANSWERED_S)
        await asyncio.wait_for(memory_core.drain(), ALL_ANSWERED_S)
    for c, (root, text) in expected.items():
        assert fake.texts(c, root) == [text]
    assert fake.limited == 0
    # Streams that were started were all stopped: a stop per start.
    assert len(fake.calls_to("chat.startStream")) == len(fake.calls_to("chat.stopStream"))


async def test_a_429_backs_off_its_workspace_and_method_only(
    limited_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake = limited_slack
    fake_openai.reply_fn = answer_to
    fake_openai.chunks, fake_openai.chunk_interval_s = STREAMED_CHUNKS, STREAMED_INTERVAL_S
    # The first workspace's next chat.stopStream gets a 429: Retry-After 2 s.
    fake.rate_limit("chat.stopStream", retry_after=RETRY_AFTER_S, team=fake.team_id)
    first = mention(fake, "q-first", CHANNEL)
    same = mention(fake, "q-same", SAME_TEAM_CHANNEL)  # the first one's workspace
    other = mention(fake, "q-other", OTHER_CHANNEL, OTHER_TEAM)
    expected = {
        CHANNEL: {str(first["event"]["ts"]): answer("q-first")},
        SAME_TEAM_CHANNEL: {str(same["event"]["ts"]): answer("q-same")},
        OTHER_CHANNEL: {str(other["event"]["ts"]): answer("q-other")},
    }
    async with running(fake, memory_core, paces=SlackPaces()):
        await fake.push(first)
        await fake.wait_until(lambda: any(c.status == 429 for c in fake.calls), ONE_ANSWER_S)
        await ask_all(fake, [same, other])  # asked while the first one waits out its 429
        await fake.wait_until(
            lambda: all(all_done(fake, c, e) for c, e in expected.items()), ONE_ANSWER_S
        )
    stops = fake.calls_to("chat.stopStream")
    limited = next(c for c in stops if c.status == 429)
    retried = next(c for c in stops if c.status == 200 and c.args["channel"] == CHANNEL)
    assert [c.status for c in stops if c.args["channel"] == CHANNEL] == [429, 200]
    # The call that got the 429 was made again once, after the Retry-After Slack asked.
    assert retried.at - limited.at >= RETRY_AFTER_S - CLOCK_SLACK_S
    # No stopStream in that workspace during the block: the method backed off there...
    in_team = [c for c in stops if fake.team_of(c.args) == fake.team_id and c is not limited]
    assert all(c.at - limited.at >= RETRY_AFTER_S - CLOCK_SLACK_S for c in in_team)
    # ...while the other workspace finished its answer before the retry.
    other_writes = [c for c in fake.calls if c.args.get("channel") == OTHER_CHANNEL]
    assert other_writes and all(c.status == 200 for c in other_writes)
    assert fake.calls.index(other_writes[-1]) < fake.calls.index(retried)
    assert fake.limited == 0
