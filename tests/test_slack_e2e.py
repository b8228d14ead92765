"""The Slack adapter end to end: real slack_bolt + slack_sdk, fake Slack, fake OpenAI, real Core.

Each test reads like a conversation: Slack delivers an event over Socket Mode
(or a signed HTTP request) and the test reads the thread as a person would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import storage
from adapters.registry import create_adapter
from adapters.slack import SlackAdapter
from adapters.slack import adapter as slack_adapter
from bot.config import Config, SlackConfig
from bot.core import Core
from bot.errors import PlatformUnavailable, StartupError
from bot.indicator import TYPING_DELAY_S
from fakes.fake_openai import FakeOpenAI, reply, unauthorized
from fakes.fake_slack import MARKDOWN_LIMIT, FakeSlack
from tests.support import SLACK_CHANNEL as CHANNEL
from tests.support import SLACK_WAIT_S as WAIT_S
from tests.support import (
    CoreFactory,
    deliver,
    fake_slack,
    http_app,
    make_core,
    slack_config,
    until,
    user_contents,
)
from tests.support import running_slack as running

__all__ = ["fake_slack"]  # the fixture, used by name

# -- Socket Mode ---------------------------------------------------------------


async def test_mention_is_answered_in_its_thread(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    # Slow to start, so the thread shows the assistant status first.
    fake_openai.script(reply("Paris is the capital of France.", ttft_s=TYPING_DELAY_S + 0.2))
    mention, twin = fake_slack.mention("what is the capital of France?")
    ts = mention["event"]["ts"]
    async with running(fake_slack, memory_core) as adapter:
        await deliver(fake_slack, adapter, memory_core, mention, twin)
    assert fake_slack.texts(CHANNEL, thread_ts=ts) == ["Paris is the capital of France."]
    [status] = fake_slack.statuses
    assert status["thread_ts"] == ts
    methods = [c.method for c in fake_slack.calls]
    first_write = min(methods.index(m) for m in methods if m.startswith("chat."))
    assert methods.index("assistant.threads.setStatus") < first_write
    (request,) = fake_openai.chat_requests
    assert "what is the capital of France?" in user_contents(request)
    assert "<@U0BOT>" not in json.dumps(request)


async def test_events_are_acked_before_the_model_answers(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Slow answer.", ttft_s=0.5))
    mention, _ = fake_slack.mention("take your time")
    ts = mention["event"]["ts"]
    async with running(fake_slack, memory_core) as adapter:
        await fake_slack.wait_ack(await fake_slack.push(mention))
        assert fake_openai.completed == 0  # acked while the model had not answered
        await until(lambda: adapter.events_handled == 1, "the listener")
        await asyncio.wait_for(memory_core.drain(), WAIT_S)
    assert fake_slack.texts(CHANNEL, ts) == ["Slow answer."]


async def test_thread_follow_up_needs_no_mention(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Paris."), reply("Madrid."))
    mention, twin = fake_slack.mention("capital of France?")
    root = mention["event"]["ts"]
    follow_up = fake_slack.event_body(
        fake_slack.message_event("and Spain, <@U0ALICE>?", user="U0BOB", thread_ts=root)
    )
    other_thread = fake_slack.event_body(
        fake_slack.message_event("unrelated", thread_ts=fake_slack.next_ts())
    )
    async with running(fake_slack, memory_core) as adapter:
        await deliver(fake_slack, adapter, memory_core, mention, twin)
        assert adapter.names is not None
        await adapter.names.settled()  # looked up after the ack, for later messages
        await deliver(fake_slack, adapter, memory_core, follow_up, other_thread)
        await adapter.names.settled()
    assert fake_slack.texts(CHANNEL, thread_ts=root) == ["Paris.", "Madrid."]
    first, second = fake_openai.chat_requests
    # A name not in the cache yet stays the id: nothing is looked up before the ack.
    assert "U0ALICE: capital of France?" in user_contents(first)
    assert "U0BOB: and Spain, @alice?" in user_contents(second)
    # Names come from users.info once per person, not once per message.
    looked_up = sorted(c.args["user"] for c in fake_slack.calls_to("users.info"))
    assert looked_up == ["U0ALICE", "U0BOB"]
    assert fake_slack.statuses == []  # both answers started at once: no status needed


async def test_dm_is_answered_without_mention(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Hi Alice!"))
    dm = fake_slack.event_body(
        fake_slack.message_event("hello", channel="D0ALICE", channel_type="im")
    )
    async with running(fake_slack, memory_core) as adapter:
        await deliver(fake_slack, adapter, memory_core, dm)
    (answer,) = fake_slack.posted("D0ALICE")
    assert answer.text == "Hi Alice!" and answer.thread_ts is None


async def test_two_threads_do_not_share_history(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    first = fake_slack.mention("remember: my password is pineapple")
    second = fake_slack.mention("what is my password?")
    async with running(fake_slack, memory_core) as adapter:
        await deliver(fake_slack, adapter, memory_core, *first)
        await deliver(fake_slack, adapter, memory_core, *second)
    request_a, request_b = fake_openai.chat_requests
    assert "pineapple" in json.dumps(request_a)
    assert "pineapple" not in json.dumps(request_b)
    for body in (first[0], second[0]):
        assert len(fake_slack.posted(CHANNEL, body["event"]["ts"])) == 1


async def test_retries_and_redeliveries_are_answered_once(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    mention, twin = fake_slack.mention("hello?")
    ts = mention["event"]["ts"]
    async with running(fake_slack, memory_core) as adapter:
        await deliver(fake_slack, adapter, memory_core, mention)
        await deliver(
            fake_slack, adapter, memory_core, mention, retry_attempt=1, retry_reason="timeout"
        )
        await deliver(fake_slack, adapter, memory_core, twin, mention)
        # Same message, new event id (as after a reinstall): still the same ts.
        again = fake_slack.event_body(mention["event"])
        await deliver(fake_slack, adapter, memory_core, again)
    assert len(fake_slack.posted(CHANNEL, ts)) == 1
    assert len(fake_openai.chat_requests) == 1


async def test_redelivery_after_restart_is_not_answered_again(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path, openai_client: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    mention, _ = fake_slack.mention("one answer only")
    ts = mention["event"]["ts"]
    for attempt in (0, 1):
        store = storage.open_store(url)
        await store.open()
        core = make_core(openai_client, store)
        try:
            async with running(fake_slack, core) as adapter:
                await deliver(
                    fake_slack,
                    adapter,
                    core,
                    mention,
                    retry_attempt=attempt,
                    retry_reason="timeout",
                )
                if attempt:  # the same message under a new event id, too
                    await deliver(
                        fake_slack, adapter, core, fake_slack.event_body(mention["event"])
                    )
        finally:
            await core.close(1.0)
            await store.close()
    assert len(fake_slack.posted(CHANNEL, ts)) == 1
    assert len(fake_openai.chat_requests) == 1


async def test_native_streaming(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    text = "Streaming " * 30
    fake_openai.script(reply(text, chunks=6, chunk_interval_s=0.02))
    mention, _ = fake_slack.mention("stream please")
    ts = mention["event"]["ts"]
    async with running(fake_slack, memory_core) as adapter:
        await deliver(fake_slack, adapter, memory_core, mention)
    (message,) = fake_slack.posted(CHANNEL, ts)
    assert message.text.strip() == text.strip() and not message.streaming
    assert len(fake_slack.calls_to("chat.startStream")) == 1
    assert fake_slack.calls_to("chat.appendStream")
    assert len(fake_slack.calls_to("chat.stopStream")) == 1
    assert fake_slack.calls_to("chat.postMessage", "chat.update") == []


async def test_refused_streaming_falls_back_and_is_remembered(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_slack.stream_error = "not_allowed"
    slow = {"chunks": 6, "chunk_interval_s": 0.02}
    fake_openai.script(reply("First answer " * 10, **slow), reply("Second answer " * 10, **slow))
    first = fake_slack.mention("one")
    second = fake_slack.mention("two")
    async with running(fake_slack, memory_core) as adapter:
        await deliver(fake_slack, adapter, memory_core, first[0])
        await deliver(fake_slack, adapter, memory_core, second[0])
    first_texts = fake_slack.texts(CHANNEL, first[0]["event"]["ts"])
    second_texts = fake_slack.texts(CHANNEL, second[0]["event"]["ts"])
    assert [t.strip() for t in first_texts] == [("First answer " * 10).strip()]
    assert [t.strip() for t in second_texts] == [("Second answer " * 10).strip()]
    assert len(fake_slack.calls_to("chat.startStream")) == 1  # the second went straight on
    assert fake_slack.calls_to("chat.update")


async def test_streaming_off_posts_whole_parts(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("All at once.", chunks=4, chunk_interval_s=0.01))
    mention, _ = fake_slack.mention("hi")
    async with running(fake_slack, memory_core, streaming=False) as adapter:
        await deliver(fake_slack, adapter, memory_core, mention)
    assert fake_slack.texts(CHANNEL, mention["event"]["ts"]) == ["All at once."]
    assert fake_slack.calls_to("chat.update", "chat.startStream") == []


@pytest.mark.parametrize("streaming", [True, False])
async def test_long_answer_is_split_not_truncated(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory, streaming: bool
) -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 150 for i in range(40)]
    text = "\n\n".join(p.strip() for p in paragraphs)  # ~30,000 characters
    fake_openai.script(reply(text, chunks=20))
    core = await core_factory(max_output_tokens=20_000, context_tokens=40_000)
    mention, _ = fake_slack.mention("write a lot")
    async with running(fake_slack, core, streaming=streaming) as adapter:
        await deliver(fake_slack, adapter, core, mention)
    parts = fake_slack.texts(CHANNEL, mention["event"]["ts"])
    assert len(parts) >= 3
    assert all(len(p) <= MARKDOWN_LIMIT for p in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())


@pytest.mark.parametrize(
    "event",
    [
        {"user": "U0BOT", "bot_id": "B0BOT", "text": "my own answer"},
        {"subtype": "bot_message", "bot_id": "B0OTHER", "text": "deploy done"},
        {"bot_id": "B0OTHER", "user": "U0OTHERBOT", "text": "another app"},
        {"subtype": "message_changed", "text": "edited"},
        {"subtype": "channel_join", "text": "<@U0CAROL> has joined"},
    ],
)
async def test_self_bot_and_subtype_events_are_ignored(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core, event: dict[str, Any]
) -> None:
    ignored = fake_slack.message_event("x", channel="D0ALICE", channel_type="im")
    ignored.update(event)
    # bolt drops our own events before any listener, so a normal DM after the
    # ignored one marks the point where both have been handled.
    marker = fake_slack.message_event("marker", channel="D0ALICE", channel_type="im")
    fake_openai.script(reply("marker answer"))
    async with running(fake_slack, memory_core) as adapter:
        await fake_slack.wait_ack(await fake_slack.push(fake_slack.event_body(ignored)))
        await deliver(fake_slack, adapter, memory_core, fake_slack.event_body(marker))
    (request,) = fake_openai.chat_requests
    assert "marker" in user_contents(request) and "x" not in user_contents(request).split()
    assert fake_slack.texts("D0ALICE") == ["marker answer"]


async def test_slack_rate_limit_is_waited_out(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Answer after a 429."))
    # Twice: more than the core's single retry of a failed write could absorb.
    fake_slack.rate_limit("chat.postMessage", retry_after=0, times=2)
    mention, _ = fake_slack.mention("hi")
    async with running(fake_slack, memory_core, streaming=False) as adapter:
        await deliver(fake_slack, adapter, memory_core, mention)
    assert fake_slack.texts(CHANNEL, mention["event"]["ts"]) == ["Answer after a 429."]
    assert [c.status for c in fake_slack.calls_to("chat.postMessage")] == [429, 429, 200]


async def test_llm_failure_is_reported_in_the_thread(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(unauthorized())
    mention, _ = fake_slack.mention("hi")
    async with running(fake_slack, memory_core) as adapter:
        await deliver(fake_slack, adapter, memory_core, mention)
    assert fake_slack.texts(CHANNEL, mention["event"]["ts"]) == [
        memory_core.texts.get("error_auth")
    ]


async def test_slack_failure_is_reported_in_the_thread(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("This answer cannot be posted."))
    fake_slack.fail("chat.postMessage", "internal_error", times=2)
    mention, _ = fake_slack.mention("hi")
    async with running(fake_slack, memory_core, streaming=False) as adapter:
        await deliver(fake_slack, adapter, memory_core, mention)
    assert fake_slack.texts(CHANNEL, mention["event"]["ts"]) == [
        memory_core.texts.get("error_delivery")
    ]


async def test_refused_status_line_uses_a_placeholder_the_answer_replaces(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_slack.status_error = "not_allowed"
    slow = TYPING_DELAY_S + 0.2  # slow to start: the thread needs a sign of progress
    fake_openai.script(reply("Done.", ttft_s=slow), reply("Done again.", ttft_s=slow))
    first, second = fake_slack.mention("one"), fake_slack.mention("two")
    async with running(fake_slack, memory_core, streaming=False) as adapter:
        await deliver(fake_slack, adapter, memory_core, first[0])
        await deliver(fake_slack, adapter, memory_core, second[0])
    assert fake_slack.texts(CHANNEL, first[0]["event"]["ts"]) == ["Done."]
    assert fake_slack.texts(CHANNEL, second[0]["event"]["ts"]) == ["Done again."]
    assert len(fake_slack.calls_to("assistant.threads.setStatus")) == 1
    # The placeholders were posted, then replaced by the answers: one message each.
    assert len(fake_slack.calls_to("chat.postMessage")) == 2


@pytest.mark.parametrize("graceful", [False, True])
async def test_reconnects_after_the_socket_drops(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core, graceful: bool
) -> None:
    fake_openai.script(reply("Still here."))
    mention, _ = fake_slack.mention("are you there?")
    async with running(fake_slack, memory_core) as adapter:
        await fake_slack.drop_sockets(graceful=graceful)
        await fake_slack.wait_until(lambda: fake_slack.connections >= 2)
        await deliver(fake_slack, adapter, memory_core, mention)
    assert fake_slack.texts(CHANNEL, mention["event"]["ts"]) == ["Still here."]
    assert len(fake_slack.calls_to("apps.connections.open")) >= 2


async def test_a_channel_the_bot_is_not_in_costs_one_call_and_one_log_line(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    memory_core: Core,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_openai.script(reply("This will not get through."))
    for method in ("chat.postMessage", "chat.startStream", "chat.update"):
        fake_slack.fail(method, "not_in_channel", times=9)
    mention, _ = fake_slack.mention("hi")
    async with running(fake_slack, memory_core) as adapter:
        await deliver(fake_slack, adapter, memory_core, mention)
    writes = [c for c in fake_slack.calls if c.method.startswith("chat.")]
    assert len(writes) == 1  # no retry, and no error notice that would be refused too
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    said = [r.getMessage() for r in caplog.records if "not_in_channel" in r.getMessage()]
    assert len(said) == 1 and "/invite" in said[0]


# -- start-up --------------------------------------------------------------------


async def test_start_logs_in_with_auth_test(fake_slack: FakeSlack, memory_core: Core) -> None:
    async with running(fake_slack, memory_core) as adapter:
        assert adapter.bot is not None and adapter.bot.user_id == "U0BOT"
        assert fake_slack.connections == 1
    assert [c.method for c in fake_slack.calls][:2] == ["auth.test", "apps.connections.open"]


async def test_a_passing_error_at_start_is_tried_again(
    fake_slack: FakeSlack, memory_core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_adapter, "START_RETRY_WAITS_S", (0.01, 0.01, 0.01))
    fake_slack.fail("auth.test", "ratelimited")
    fake_slack.fail("auth.test", "internal_error")
    async with running(fake_slack, memory_core) as adapter:
        assert adapter.bot is not None and adapter.bot.user_id == "U0BOT"
    assert len(fake_slack.calls_to("auth.test")) == 3


async def test_an_api_that_cannot_be_reached_is_tried_again_then_named(
    fake_slack: FakeSlack,
    memory_core: Core,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(slack_adapter, "START_RETRY_WAITS_S", (0.01, 0.01))
    with socket.socket() as taken:  # a port nothing listens on
        taken.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{taken.getsockname()[1]}/api/"
    adapter = SlackAdapter(slack_config(fake_slack), memory_core, api_base_url=nowhere)
    with pytest.raises(StartupError, match="cannot reach") as caught:
        await adapter.start()
    assert not isinstance(caught.value, PlatformUnavailable)  # most likely a wrong URL: 2
    tries = [r for r in caplog.records if "trying again" in r.getMessage()]
    assert len(tries) == 2
    await adapter.stop()


async def test_an_error_that_does_not_pass_stops_the_start_as_unavailable(
    fake_slack: FakeSlack, memory_core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_adapter, "START_RETRY_WAITS_S", (0.01, 0.01))
    fake_slack.fail("auth.test", "internal_error", times=3)
    adapter = SlackAdapter(slack_config(fake_slack), memory_core, api_base_url=fake_slack.api_url)
    with pytest.raises(PlatformUnavailable) as caught:
        await adapter.start()
    assert "internal_error" in str(caught.value) and "start again later" in str(caught.value)
    assert len(fake_slack.calls_to("auth.test")) == 3
    await adapter.stop()


@pytest.mark.parametrize(
    ("field", "names"),
    [("bot_token", "SLACK_BOT_TOKEN"), ("app_token", "SLACK_APP_TOKEN")],
)
async def test_bad_tokens_stop_start_with_one_clear_line(
    fake_slack: FakeSlack, memory_core: Core, field: str, names: str
) -> None:
    wrong: dict[str, Any] = {field: "xoxb-wrong"}
    adapter = SlackAdapter(
        slack_config(fake_slack, **wrong), memory_core, api_base_url=fake_slack.api_url
    )
    with pytest.raises(StartupError) as caught:
        await adapter.start()
    message = str(caught.value)
    assert names in message and "invalid_auth" in message and "\n" not in message
    assert fake_slack.connections == 0
    await adapter.stop()  # safe after a failed start


def test_create_needs_a_bot_token(memory_core: Core) -> None:
    assert create_adapter("slack", Config(), memory_core) is None
    adapter = create_adapter("slack", Config(slack=SlackConfig(bot_token="x")), memory_core)
    assert isinstance(adapter, SlackAdapter)


# -- HTTP mode -------------------------------------------------------------------


async def test_http_signed_event_is_answered(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    fake_openai.script(reply("Over HTTP."))
    mention, twin = fake_slack.mention("hi over http")
    async with http_app(fake_slack, memory_core) as (adapter, url):
        assert await fake_slack.deliver(url, mention) == (200, "")
        assert (await fake_slack.deliver(url, mention, retry_num=1))[0] == 200
        assert (await fake_slack.deliver(url, twin))[0] == 200
        await until(lambda: adapter.events_handled >= 3, "the listener")
        await asyncio.wait_for(memory_core.drain(), WAIT_S)
    assert fake_slack.texts(CHANNEL, mention["event"]["ts"]) == ["Over HTTP."]
    assert fake_slack.connections == 0  # no websocket in HTTP mode


async def test_http_rejects_bad_and_stale_signatures(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    mention, _ = fake_slack.mention("forged")
    async with http_app(fake_slack, memory_core) as (adapter, url):
        bad = await fake_slack.deliver(url, mention, secret="not-the-secret")
        stale = await fake_slack.deliver(url, mention, timestamp=int(time.time()) - 600)
        await asyncio.sleep(0.05)  # give a wrongly started listener the chance to run
        assert (bad[0], stale[0]) == (401, 401)
        assert adapter.events_handled == 0
    assert fake_openai.chat_requests == []
    assert fake_slack.posted() == []


async def post_raw(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status


async def test_http_refuses_unsigned_garbage_before_reading_it_and_logs_it_once(
    fake_slack: FakeSlack, memory_core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    now = str(int(time.time()))
    big = json.dumps({"type": "event_callback", "x": "B" * 500_000}).encode()
    requests = [
        (big, {"X-Slack-Request-Timestamp": now}),  # no signature
        (b"{{{not json", {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=00"}),
        (b"payload=%7B", {"Content-Type": "application/x-www-form-urlencoded"}),
        (b"{}", {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}),
        (b"{{{", {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=\u00e9"}),
    ]
    async with http_app(fake_slack, memory_core) as (adapter, url):
        statuses = [await post_raw(url, body, headers) for body, headers in requests * 5]
        assert adapter.connected  # still listening
    assert statuses == [401] * 25
    assert adapter.events_handled == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in refused]
    assert max(len(r.getMessage()) for r in caplog.records) < 1000  # no body in the log


async def test_http_a_signed_but_unreadable_body_gets_400(
    fake_slack: FakeSlack, memory_core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    stamp = int(time.time())
    body = "{{{not json"
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": fake_slack.sign(body, stamp),
    }
    async with http_app(fake_slack, memory_core) as (_adapter, url):
        assert await post_raw(url, body.encode(), headers) == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_http_answers_url_verification(fake_slack: FakeSlack, memory_core: Core) -> None:
    body = {"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    async with http_app(fake_slack, memory_core) as (_adapter, url):
        status, text = await fake_slack.deliver(url, {**body, "type": "url_verification"})
    assert status == 200 and body["challenge"] in text
