"""The Slack sink and name cache, through the real slack_sdk client against the fake Slack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.names import (
    MAX_CONCURRENT_LOOKUPS,
    MAX_LOOKUPS_PER_MESSAGE,
    UserNames,
    display_name,
)
from adapters.slack.pacing import STATUS, TIERS, ReadsRateLimitRetry, SlackPaces
from adapters.slack.sink import MARKDOWN_MAX_LEN, SlackSink, TeamFallbacks
from bot.errors import PlatformRefused
from bot.pacing import Pacer
from bot.types import NativeStreamSink, NativeStreamUnavailable, ReplySink
from fakes.fake_slack import MARKDOWN_LIMIT, FakeSlack
from tests.support import SLACK_CHANNEL as CHANNEL
from tests.support import SLACK_THREAD as THREAD
from tests.support import client, make_sink

__all__ = ["client"]  # the fixture, used by name


@pytest_asyncio.fixture
async def fake_slack(no_proxy_env: None) -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def test_sink_satisfies_the_core_protocols() -> None:
    sink = make_sink(AsyncWebClient(token="x"))
    assert isinstance(sink, ReplySink) and isinstance(sink, NativeStreamSink)
    assert sink.limits.max_len == MARKDOWN_MAX_LEN < MARKDOWN_LIMIT
    assert sink.limits.native_stream and sink.limits.stream and sink.limits.can_edit
    assert sink.pace_key == f"slack:T0FAKE:{CHANNEL}"


def test_streaming_off_means_one_message_per_part() -> None:
    sink = make_sink(AsyncWebClient(token="x"), streaming=False)
    assert not sink.limits.stream and not sink.limits.native_stream


async def test_send_and_edit_use_markdown_text_in_the_thread(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    sink = make_sink(client)
    ts = await sink.send("**Paris**")
    await sink.edit(ts, "**Paris** is the capital.")
    (post,) = fake_slack.calls_to("chat.postMessage")
    assert post.args["markdown_text"] == "**Paris**"
    assert post.args["thread_ts"] == THREAD and "text" not in post.args
    (update,) = fake_slack.calls_to("chat.update")
    assert update.args == {
        "channel": CHANNEL,
        "ts": ts,
        "markdown_text": "**Paris** is the capital.",
    }
    assert fake_slack.texts(CHANNEL, THREAD) == ["**Paris** is the capital."]


async def test_typing_sets_the_assistant_status(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    await make_sink(client).typing()
    assert fake_slack.statuses == [
        {"channel_id": CHANNEL, "thread_ts": THREAD, "status": "is thinking…"}
    ]
    assert fake_slack.posted() == []


async def test_refused_status_falls_back_to_a_placeholder_the_answer_replaces(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    fake_slack.status_error = "missing_scope"
    fallbacks = TeamFallbacks()
    sink = make_sink(client, fallbacks)
    await sink.typing()
    assert fake_slack.texts(CHANNEL, THREAD) == ["…"]
    ts = await sink.send("the answer")
    assert fake_slack.texts(CHANNEL, THREAD) == ["the answer"]
    assert [m.ts for m in fake_slack.posted()] == [ts]
    assert "T0FAKE" in fallbacks.no_status
    # The next answer in this workspace does not ask again.
    await make_sink(client, fallbacks).typing()
    assert len(fake_slack.calls_to("assistant.threads.setStatus")) == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 2


async def test_a_broken_status_call_is_raised_not_remembered(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    fake_slack.fail("assistant.threads.setStatus", "internal_error")
    fallbacks = TeamFallbacks()
    with pytest.raises(SlackApiError):
        await make_sink(client, fallbacks).typing()
    assert not fallbacks.no_status


async def test_top_level_dm_uses_a_placeholder_and_no_native_stream(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    sink = make_sink(client, thread=None, channel="D0ALICE")
    assert not sink.limits.native_stream
    await sink.typing()
    ts = await sink.send("hello")
    assert fake_slack.calls_to("assistant.threads.setStatus") == []
    (posted,) = fake_slack.posted("D0ALICE")
    assert (posted.ts, posted.thread_ts, posted.text) == (ts, None, "hello")


async def test_native_stream_builds_one_message(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    sink = make_sink(client)
    stream_id = await sink.stream_start("Hel")
    await sink.stream_append(stream_id, "lo, ")
    await sink.stream_append(stream_id, "")
    await sink.stream_append(stream_id, "world")
    await sink.stream_stop(stream_id)
    (message,) = fake_slack.posted(CHANNEL, THREAD)
    assert message.text == "Hello, world" and not message.streaming
    (start,) = fake_slack.calls_to("chat.startStream")
    assert start.args["recipient_team_id"] == "T0FAKE"
    assert start.args["recipient_user_id"] == "U0ALICE"
    assert len(fake_slack.calls_to("chat.appendStream")) == 2  # the empty piece is skipped


async def test_refused_stream_raises_unavailable_and_is_remembered_per_team(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    fake_slack.stream_error = "not_allowed"
    fallbacks = TeamFallbacks()
    sink = make_sink(client, fallbacks)
    with pytest.raises(NativeStreamUnavailable):
        await sink.stream_start("Hello")
    assert not sink.limits.native_stream
    assert "T0FAKE" in fallbacks.no_stream
    later = make_sink(client, fallbacks)
    assert not later.limits.native_stream
    with pytest.raises(NativeStreamUnavailable):
        await later.stream_start("again")
    assert len(fake_slack.calls_to("chat.startStream")) == 1


async def test_other_stream_errors_are_raised_as_they_are(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    fake_slack.fail("chat.startStream", "msg_too_long")
    fallbacks = TeamFallbacks()
    with pytest.raises(SlackApiError):
        await make_sink(client, fallbacks).stream_start("Hello")
    assert not fallbacks.no_stream


async def test_an_error_only_the_operator_can_fix_is_refused_with_the_fix(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    fake_slack.fail("chat.startStream", "channel_not_found")
    fallbacks = TeamFallbacks()
    with pytest.raises(PlatformRefused, match="channel_not_found; the channel is gone"):
        await make_sink(client, fallbacks).stream_start("Hello")
    assert not fallbacks.no_stream


async def test_stream_replaces_a_placeholder(fake_slack: FakeSlack, client: AsyncWebClient) -> None:
    fake_slack.status_error = "not_allowed"
    sink = make_sink(client)
    await sink.typing()
    stream_id = await sink.stream_start("streamed")
    await sink.stream_stop(stream_id)
    assert fake_slack.texts(CHANNEL, THREAD) == ["streamed"]


async def test_failed_post_raises(fake_slack: FakeSlack, client: AsyncWebClient) -> None:
    fake_slack.fail("chat.postMessage", "internal_error")
    with pytest.raises(SlackApiError):
        await make_sink(client).send("hello")


async def test_fake_reads_form_json_and_query_arguments(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    await client.api_call("chat.postMessage", data={"channel": CHANNEL, "text": "form"})
    await client.api_call("chat.postMessage", json={"channel": CHANNEL, "text": "json"})
    fake_slack.add_user("U0ANN", "Ann")
    info = await client.users_info(user="U0ANN")
    assert fake_slack.texts(CHANNEL) == ["form", "json"]
    assert info["user"]["profile"]["display_name"] == "Ann"
    assert {c.token for c in fake_slack.calls} == {fake_slack.bot_token}


async def test_fake_rejects_bad_tokens_and_too_long_markdown(fake_slack: FakeSlack) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=fake_slack.api_url)
    with pytest.raises(SlackApiError) as caught:
        await wrong.auth_test()
    assert caught.value.response["error"] == "invalid_auth"
    right = AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    with pytest.raises(SlackApiError) as caught:
        await right.chat_postMessage(channel=CHANNEL, markdown_text="x" * (MARKDOWN_LIMIT + 1))
    assert caught.value.response["error"] == "msg_too_long"


# -- user names ---------------------------------------------------------------


async def looked_up(names: UserNames, ids: list[str]) -> dict[str, str]:
    """Queue, look up (as after an ack) and read back from the cache."""
    names.want(ids)
    names.fill()
    await names.settled()
    return names.known(ids)


async def test_names_are_looked_up_once_however_many_messages_ask() -> None:
    calls: list[str] = []

    async def lookup(user_id: str) -> str | None:
        calls.append(user_id)
        await asyncio.sleep(0.01)
        return {"U1": "Ann", "U2": "Ben"}.get(user_id)

    names = UserNames(lookup)
    assert names.known(["U1"]) == {}  # never a lookup on the spot
    assert names.want(["U1", "U2"]) == 2
    assert names.want(["U1"]) == 0  # already queued
    assert await looked_up(names, ["U1", "U2", "U3"]) == {"U1": "Ann", "U2": "Ben"}
    assert sorted(calls) == ["U1", "U2", "U3"]
    assert names.want(["U1", "U2", "U3"]) == 0  # a miss is remembered for a while too
    assert sorted(calls) == ["U1", "U2", "U3"]


async def test_name_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    calls: list[str] = []

    async def lookup(user_id: str) -> str | None:
        calls.append(user_id)
        return f"name-{user_id}"

    names = UserNames(lookup, max_size=2, clock=lambda: now[0])
    await looked_up(names, ["U1", "U2", "U3"])
    assert len(names) == 2
    now[0] += 10_000.0
    await looked_up(names, ["U3"])
    assert calls.count("U3") == 2


async def test_a_failing_lookup_gives_no_name_instead_of_an_error() -> None:
    async def lookup(user_id: str) -> str | None:
        raise RuntimeError("boom")

    assert await looked_up(UserNames(lookup), ["U1"]) == {}


async def test_lookups_are_bounded_per_message_in_flight_and_queued() -> None:
    running, most = 0, 0
    calls: list[str] = []

    async def lookup(user_id: str) -> str | None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        calls.append(user_id)
        await asyncio.sleep(0)
        running -= 1
        return user_id.lower()

    names = UserNames(lookup)
    ids = [f"U{i:05d}" for i in range(3000)]
    assert names.want(ids) == MAX_LOOKUPS_PER_MESSAGE  # the first ones mentioned
    names.fill()
    await names.settled()
    assert calls == ids[:MAX_LOOKUPS_PER_MESSAGE]
    assert most == MAX_CONCURRENT_LOOKUPS
    small = UserNames(lookup, per_message=100, max_queued=50)
    assert small.want(ids) == 50 and small.skipped == 1
    await small.close()


def test_display_name_prefers_the_display_name() -> None:
    user = {
        "name": "ann.k",
        "real_name": "Ann K",
        "profile": {"display_name": "", "real_name": "Ann K"},
    }
    assert display_name(user) == "Ann K"
    assert display_name({**user, "profile": {"display_name": "annie"}}) == "annie"
    assert display_name({}) is None


# -- pacing per write kind, 429s -------------------------------------------------------


def paced_sink(client: AsyncWebClient, pacer: Pacer, channel: str = CHANNEL) -> SlackSink:
    return SlackSink(
        client,
        TeamFallbacks(),
        team_id="T0FAKE",
        channel=channel,
        thread_ts=THREAD,
        user_id="U0ALICE",
        streaming=True,
        paces=SlackPaces(),
        pacer=pacer,
    )


def test_posts_are_paced_per_channel_and_other_writes_per_workspace() -> None:
    pacer = Pacer()
    here = paced_sink(AsyncWebClient(token="x"), pacer)
    there = paced_sink(AsyncWebClient(token="x"), pacer, channel="C0OTHER")
    assert here.pace_for("send").key != there.pace_for("send").key
    for op in ("edit", "start", "append", "stop"):
        assert here.pace_for(op) == there.pace_for(op)  # one budget for the workspace
    assert here.pace_for("stop").key == "slack:T0FAKE:chat.stopStream"


async def test_the_status_line_is_skipped_when_its_budget_is_spent(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    pacer = Pacer()
    burst = TIERS[STATUS][0]
    for _ in range(burst + 2):
        await paced_sink(client, pacer).typing()
    assert len(fake_slack.statuses) == burst  # the rest were skipped, not sent into a 429
    assert fake_slack.calls_to(STATUS) and all(c.status == 200 for c in fake_slack.calls)


async def test_a_429_is_waited_out_once_with_no_retry_from_slack_sdk(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    client.retry_handlers = [ReadsRateLimitRetry(max_retry_count=5)]
    fake_slack.rate_limit("chat.postMessage", retry_after=1)
    pacer = Pacer()
    sink = paced_sink(client, pacer)
    await sink.send("hello")
    limited, retried = fake_slack.calls_to("chat.postMessage")
    assert (limited.status, retried.status) == (429, 200)
    assert retried.at - limited.at >= 1 - 0.01  # Slack's Retry-After, respected
    assert sink.rate_limited == 1
    assert fake_slack.texts(CHANNEL, THREAD) == ["hello"]
