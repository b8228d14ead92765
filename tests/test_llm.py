"""bot.llm.OpenAIChat driving the real openai SDK against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from bot.config import NO_KEY_PLACEHOLDER, config_from_dict
from bot.errors import LLMError
from bot.llm import OpenAIChat, default_token_param, make_client
from bot.types import Answer, ChatMessage, Usage
from fakes.fake_openai import (
    GARBAGE_LINE,
    Behaviour,
    FakeOpenAI,
    context_too_long,
    dropped,
    echo_last_user,
    error,
    malformed,
    rate_limited,
    reply,
    server_error,
    slow_first_token,
    unauthorized,
    unsupported_parameter,
)
from fakes.fixtures import FAKE_API_KEY, sdk_client
from tests.support import make_chat

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "second question"},
]
HANG_GUARD_S = 5.0  # only so a broken test fails instead of hanging; never a timing check
REPO = Path(__file__).resolve().parents[1]


async def collect(
    chat: OpenAIChat, messages: list[ChatMessage] = MESSAGES
) -> tuple[list[str], Answer]:
    answer = Answer()
    deltas: list[str] = []
    async with asyncio.timeout(HANG_GUARD_S):
        async with contextlib.aclosing(chat.stream(messages, answer)) as stream:
            async for delta in stream:
                deltas.append(delta)
    return deltas, answer


async def expect_error(chat: OpenAIChat, kind: str) -> tuple[LLMError, Answer]:
    answer = Answer()
    with pytest.raises(LLMError) as caught:
        async with asyncio.timeout(HANG_GUARD_S):
            async with contextlib.aclosing(chat.stream(MESSAGES, answer)) as stream:
                async for _ in stream:
                    pass
    assert caught.value.kind == kind, caught.value
    return caught.value, answer


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The delays OpenAIChat logged before each retry."""
    delays = []
    for record in caplog.records:
        if record.name == "bot.llm" and record.msg.startswith("model call attempt"):
            assert isinstance(record.args, tuple)
            delay = record.args[2]
            assert isinstance(delay, int | float)
            delays.append(float(delay))
    return delays


# -- the happy path ------------------------------------------------------------------


async def test_deltas_concatenate_to_the_scripted_text_and_usage_is_captured(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    text = "Hello there, this is a streamed answer."
    fake_openai.script(reply(text, chunks=5, usage=(11, 7)))
    deltas, answer = await collect(make_chat(openai_client))
    assert len(deltas) == 5
    assert "".join(deltas) == text == answer.text
    assert answer.usage == Usage(prompt_tokens=11, completion_tokens=7)


@pytest.mark.parametrize("gzip", [False, True])
async def test_a_compressed_stream_reads_like_a_plain_one(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, gzip: bool
) -> None:
    # Unencoded streams are read raw; a proxy may gzip one, and then it must be decoded.
    text = "Grüße aus dem Stream 👋 " * 40
    fake_openai.script(reply(text, chunks=12, gzip=gzip))
    deltas, answer = await collect(make_chat(openai_client))
    assert answer.text == text == "".join(deltas)


async def test_request_body_carries_model_messages_temperature_stream_and_limit(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    await collect(make_chat(openai_client, model="my-model", temperature=0.25))
    [body] = fake_openai.chat_requests
    assert body["model"] == "my-model"
    assert body["messages"] == MESSAGES
    assert body["temperature"] == 0.25
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    # A loopback server is "OpenAI-compatible", not OpenAI: it gets max_tokens.
    assert body["max_tokens"] == 128
    assert "max_completion_tokens" not in body
    headers = fake_openai.requests[0].headers
    assert headers["Authorization"] == f"Bearer {FAKE_API_KEY}"
    assert headers["Content-Type"] == "application/json"  # the body goes as bytes


async def test_non_ascii_text_reaches_the_model_unchanged(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    text = '안녕하세요 👋🏽 "quoted" \\ back\\slash\n\tnew line, \u0000 nul, \u202e rtl'
    messages = [{"role": "user", "content": text}]
    await collect(make_chat(openai_client), messages)
    [body] = fake_openai.chat_requests
    assert body["messages"] == messages


async def test_a_lone_surrogate_is_replaced_not_a_failed_request(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    # json.loads turns an unpaired escape such as "\\ud83d" into a str that no
    # UTF-8 encoder accepts; the request must still go.
    messages = [{"role": "user", "content": "broken \ud83d emoji"}]
    _, answer = await collect(make_chat(openai_client), messages)
    assert answer.text
    [body] = fake_openai.chat_requests
    assert body["messages"] == [{"role": "user", "content": "broken ? emoji"}]


async def test_answers_reuse_one_connection(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    # The stream's end after [DONE] must be read, or closing the response closes
    # its connection and every answer pays for a new one. The server ends the body
    # a moment after [DONE], as one under load (or a proxy) does.
    chat = make_chat(openai_client)
    fake_openai.script(*(reply("a short answer", end_after_done_s=0.05) for _ in range(3)))
    for _ in range(3):
        _, answer = await collect(chat)
        assert answer.text
    peers = {r.peer for r in fake_openai.requests}
    assert len(fake_openai.requests) == 3
    assert len(peers) == 1 and None not in peers, peers


async def test_max_completion_tokens_can_be_chosen(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    await collect(make_chat(openai_client, token_param="max_completion_tokens"))
    [body] = fake_openai.chat_requests
    assert body["max_completion_tokens"] == 128
    assert "max_tokens" not in body


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("https://api.openai.com/v1", "max_completion_tokens"),
        ("https://myres.openai.azure.com/openai/v1/", "max_completion_tokens"),
        ("http://localhost:11434/v1", "max_tokens"),
        ("http://127.0.0.1:8080/v1", "max_tokens"),
        ("https://openrouter.ai/api/v1", "max_tokens"),
    ],
)
def test_token_param_follows_the_host(url: str, param: str) -> None:
    assert default_token_param(url) == param


async def test_reply_function_sees_the_history(no_proxy_env: None) -> None:
    # The fake's echo mode answers with the last user message of the request.
    async with FakeOpenAI(reply_fn=echo_last_user) as fake:
        client = sdk_client(fake.base_url + "/v1")
        try:
            _, answer = await collect(make_chat(client))
        finally:
            await client.close()
    assert answer.text == "second question"


# -- retries before the first text ---------------------------------------------------


async def test_429_with_retry_after_then_success_is_one_answer_from_two_requests(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.llm")
    fake_openai.script(rate_limited(retry_after_s=0.2), reply("after the wait"))
    deltas, answer = await collect(make_chat(openai_client))
    assert "".join(deltas) == answer.text == "after the wait"
    assert fake_openai.request_count == 2
    [delay] = retry_delays(caplog)
    assert delay >= 0.2  # Retry-After was honoured, not the (tiny) backoff


async def test_retry_after_ms_header_is_read(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.llm")
    fake_openai.script(rate_limited(retry_after_s=None, headers={"retry-after-ms": "150"}))
    await collect(make_chat(openai_client))
    [delay] = retry_delays(caplog)
    assert delay >= 0.15


async def test_429_forever_ends_as_rate_limited_within_the_deadline(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.default = rate_limited(retry_after_s=0.1)
    chat = make_chat(openai_client, request_timeout_s=0.6, max_retries=100)
    await expect_error(chat, "rate_limited")
    # The deadline, not max_retries, stopped it: a handful of requests, not 101.
    assert 2 <= fake_openai.request_count < 10


async def test_retry_after_beyond_the_deadline_gives_up_at_once(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(rate_limited(retry_after_s=30))
    chat = make_chat(openai_client, request_timeout_s=1.0, retry_after_cap_s=60)
    await expect_error(chat, "rate_limited")
    assert fake_openai.request_count == 1


async def test_insufficient_quota_is_not_retried(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(
        error(429, "You exceeded your current quota.", type_="insufficient_quota",
              code="insufficient_quota")
    )  # fmt: skip
    await expect_error(make_chat(openai_client), "rate_limited")
    assert fake_openai.request_count == 1


async def test_500_is_retried_then_reported_unavailable(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.default = server_error(500)
    await expect_error(make_chat(openai_client, max_retries=2), "unavailable")
    assert fake_openai.request_count == 3  # the first try and two retries


async def test_503_then_success(fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI) -> None:
    fake_openai.script(server_error(503), server_error(502), reply("back"))
    _, answer = await collect(make_chat(openai_client))
    assert answer.text == "back"
    assert fake_openai.request_count == 3


async def test_connection_refused_is_unavailable(no_proxy_env: None) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = sdk_client(f"http://127.0.0.1:{port}/v1")
    try:
        await expect_error(make_chat(client, max_retries=1), "unavailable")
    finally:
        await client.close()


# -- failures that are not retried ---------------------------------------------------


async def test_context_length_exceeded_is_not_retried(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(context_too_long())
    await expect_error(make_chat(openai_client), "context_too_long")
    assert fake_openai.request_count == 1


@pytest.mark.parametrize(
    "message",
    [
        # vLLM words it without an error code
        "This model's maximum context length is 4096 tokens. However, you requested 5000.",
        # llama.cpp
        "the request exceeds the available context size, try increasing it",
    ],
)
async def test_context_errors_of_other_servers_are_recognised(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, message: str
) -> None:
    fake_openai.script(error(400, message, type_="BadRequestError", code=None))
    await expect_error(make_chat(openai_client), "context_too_long")


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_not_retried_and_never_log_the_key(
    fake_openai: FakeOpenAI,
    openai_client: openai.AsyncOpenAI,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    # A server that echoes the whole key back in its message.
    fake_openai.script(
        error(status, f"Incorrect API key provided: {FAKE_API_KEY}.", type_="invalid_request_error",
              code="invalid_api_key")
    )  # fmt: skip
    err, _ = await expect_error(make_chat(openai_client), "auth")
    assert fake_openai.request_count == 1
    assert FAKE_API_KEY not in caplog.text
    assert FAKE_API_KEY not in str(err)


async def test_openai_style_401(fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI) -> None:
    fake_openai.script(unauthorized())
    await expect_error(make_chat(openai_client), "auth")


async def test_a_404_says_a_setting_is_wrong_not_the_message(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(
        error(404, "The model `gpt-nope` does not exist.", type_="invalid_request_error",
              code="model_not_found")
    )  # fmt: skip
    await expect_error(make_chat(openai_client), "not_found")
    assert fake_openai.request_count == 1


async def test_other_4xx_is_bad_request(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(error(422, "Unprocessable.", type_="invalid_request_error", code=None))
    await expect_error(make_chat(openai_client), "bad_request")
    assert fake_openai.request_count == 1


# -- a server that rejects a request field -------------------------------------------


async def test_rejected_max_tokens_switches_to_max_completion_tokens(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(unsupported_parameter("max_tokens"))
    chat = make_chat(openai_client, max_retries=0)  # adapting is not a retry
    _, answer = await collect(chat)
    await collect(chat)  # and it is remembered
    first, second, third = fake_openai.chat_requests
    assert first["max_tokens"] == 128
    assert second["max_completion_tokens"] == third["max_completion_tokens"] == 128
    assert "max_tokens" not in second and "max_tokens" not in third
    assert answer.text


async def test_rejected_temperature_is_dropped(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(
        error(400, "Unsupported value: 'temperature' does not support 0.3 with this model.",
              type_="invalid_request_error", code="unsupported_value", param="temperature")
    )  # fmt: skip
    _, answer = await collect(make_chat(openai_client))
    first, second = fake_openai.chat_requests
    assert first["temperature"] == 0.3
    assert "temperature" not in second
    assert answer.text


async def test_a_field_rejected_twice_is_a_bad_request(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.default = error(
        400, "Unsupported parameter: 'max_tokens'", type_="x", code="unsupported_parameter"
    )
    await expect_error(make_chat(openai_client), "bad_request")
    assert fake_openai.request_count == 2  # the original, then one with the swapped field


# -- timeouts ------------------------------------------------------------------------


async def test_slow_first_token_times_out(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.default = slow_first_token(3.0)
    chat = make_chat(openai_client, first_token_timeout_s=0.2, request_timeout_s=0.5)
    _, answer = await expect_error(chat, "timeout")
    assert answer.text == ""
    assert fake_openai.request_count >= 1


async def test_slow_response_headers_time_out(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.default = Behaviour(headers_delay_s=3.0)
    chat = make_chat(openai_client, first_token_timeout_s=0.2, request_timeout_s=0.3)
    await expect_error(chat, "timeout")


async def test_silence_after_text_ends_the_answer_as_interrupted(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    # Far from the deadline, the HTTP read timeout (set to the allowed silence) ends it.
    fake_openai.script(reply("one two three", chunks=3, chunk_interval_s=1.0))
    chat = make_chat(openai_client, first_token_timeout_s=0.2, request_timeout_s=3.0)
    err, answer = await expect_error(chat, "interrupted")
    assert answer.text == "one "
    assert "no text within 0.2s" in err.detail
    assert fake_openai.request_count == 1


async def test_a_stream_still_running_at_the_total_deadline_is_cut_there(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    # Chunks keep coming within the allowed silence, but the total deadline is near.
    fake_openai.script(reply("a b c d e f g h i j", chunks=10, chunk_interval_s=0.15))
    chat = make_chat(openai_client, first_token_timeout_s=0.5, request_timeout_s=0.6)
    err, answer = await expect_error(chat, "interrupted")
    assert answer.text and "a b c d e f g h i j".startswith(answer.text)
    assert answer.text != "a b c d e f g h i j"
    assert "total deadline" in err.detail


async def test_one_slow_first_token_is_retried(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(slow_first_token(3.0), reply("quick this time"))
    chat = make_chat(openai_client, first_token_timeout_s=0.2, request_timeout_s=2.0)
    _, answer = await collect(chat)
    assert answer.text == "quick this time"
    assert fake_openai.request_count == 2


async def test_a_thinking_model_is_not_cut_off_by_the_first_token_timeout(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    # Reasoning arrives for 0.4s before any text; the first-token timeout is 0.15s.
    thoughts = tuple(f"step {i} " for i in range(8))
    fake_openai.script(
        reply("the answer", thinking=thoughts, thinking_interval_s=0.05, thinking_field="reasoning")
    )
    chat = make_chat(openai_client, first_token_timeout_s=0.15, request_timeout_s=2.0)
    _, answer = await collect(chat)
    assert answer.text == "the answer"  # the thinking is not part of the answer
    assert fake_openai.request_count == 1


async def test_a_thinking_model_that_goes_silent_times_out(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.default = slow_first_token(3.0, thinking=("hmm",))
    chat = make_chat(openai_client, first_token_timeout_s=0.15, request_timeout_s=0.4)
    await expect_error(chat, "timeout")


# -- breaks after text ---------------------------------------------------------------


async def test_dropped_mid_stream_is_interrupted_and_not_retried(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    text = "one two three four five six"
    fake_openai.script(dropped(after_chunks=2, text=text, chunks=6))
    chat = make_chat(openai_client)
    answer = Answer()
    deltas: list[str] = []
    with pytest.raises(LLMError) as caught:
        async with contextlib.aclosing(chat.stream(MESSAGES, answer)) as stream:
            async for delta in stream:
                deltas.append(delta)
    assert caught.value.kind == "interrupted"
    assert len(deltas) == 2
    assert answer.text == "".join(deltas)
    assert text.startswith(answer.text)
    assert fake_openai.request_count == 1


async def test_dropped_before_any_text_is_retried(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(dropped(after_chunks=0), reply("second try"))
    _, answer = await collect(make_chat(openai_client))
    assert answer.text == "second try"
    assert fake_openai.request_count == 2


async def test_malformed_sse_after_text_is_interrupted(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(malformed(after_chunks=2, text="abcdefgh", garbage=b"data: {nope\n\n"))
    err, answer = await expect_error(make_chat(openai_client), "interrupted")
    assert answer.text == "abcd"
    assert "malformed" in err.detail
    assert fake_openai.request_count == 1


async def test_malformed_sse_before_text_is_retried_once(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.default = malformed(after_chunks=0)
    await expect_error(make_chat(openai_client, max_retries=5), "unavailable")
    assert fake_openai.request_count == 2


async def test_one_malformed_stream_then_success(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(malformed(after_chunks=0), reply("clean"))
    _, answer = await collect(make_chat(openai_client))
    assert answer.text == "clean"


async def test_a_stray_non_data_line_is_ignored(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(malformed(after_chunks=1, text="abcdefgh", garbage=GARBAGE_LINE))
    _, answer = await collect(make_chat(openai_client))
    assert answer.text == "abcdefgh"


async def test_error_event_in_the_stream_before_text_is_retried(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    event = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    fake_openai.script(malformed(after_chunks=0, garbage=event), reply("fine"))
    _, answer = await collect(make_chat(openai_client))
    assert answer.text == "fine"
    assert fake_openai.request_count == 2


# -- closing the stream --------------------------------------------------------------


async def test_cancellation_closes_the_connection(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.default = reply("x" * 200, chunks=100, chunk_interval_s=0.01)
    chat = make_chat(openai_client, request_timeout_s=10.0)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in chat.stream(MESSAGES, Answer()):
            first.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(HANG_GUARD_S):
        await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake_openai.wait_for(lambda f: f.disconnects == 1)
    assert fake_openai.completed == 0


async def test_leaving_early_under_aclosing_closes_the_connection(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.default = reply("y" * 200, chunks=100, chunk_interval_s=0.01)
    chat = make_chat(openai_client, request_timeout_s=10.0)
    async with contextlib.aclosing(chat.stream(MESSAGES, Answer())) as stream:
        async for _ in stream:
            break
    await fake_openai.wait_for(lambda f: f.disconnects == 1)


# -- make_client ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Settings:
    api_key: str
    base_url: str | None
    request_timeout_s: float = 5.0


async def test_make_client_uses_base_url_and_disables_sdk_retries(
    fake_openai: FakeOpenAI,
) -> None:
    client = make_client(_Settings(api_key="sk-abc", base_url=fake_openai.base_url + "/v1"))
    try:
        assert client.max_retries == 0
        _, answer = await collect(make_chat(client))
    finally:
        await client.close()
    assert answer.text
    assert fake_openai.requests[0].headers["Authorization"] == "Bearer sk-abc"


async def test_openai_base_url_reaches_the_client_through_config_only(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"OPENAI_API_KEY": "sk-abc", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    client = make_client(config_from_dict({}, env).openai)
    try:
        await collect(make_chat(client))
    finally:
        await client.close()
    assert fake_openai.request_count == 1
    # Config is the only reader of the environment: neither we nor the SDK look again.
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    direct = make_client(_Settings(api_key="", base_url=None))
    try:
        assert str(direct.base_url).startswith("https://api.openai.com/")
        assert direct.api_key == NO_KEY_PLACEHOLDER  # config's one placeholder
    finally:
        await direct.close()


# -- the fake itself, as other tests and benchmarks use it ---------------------------


async def test_fake_serves_non_streaming_requests_and_models(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(reply("whole answer", usage=(3, 2)))
    completion = await openai_client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "whole answer"
    assert completion.usage is not None and completion.usage.completion_tokens == 2
    models = await openai_client.models.list()
    assert [m.id for m in models.data] == [fake_openai.model]


def test_fake_runs_as_its_own_process(no_proxy_env: None) -> None:
    cmd = [sys.executable, "-m", "fakes.fake_openai", "--port", "0", "--ttft-ms", "0"]
    cmd += ["--chunks", "3", "--chunk-interval-ms", "0", "--text", "from another process"]
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line.startswith("listening on http://127.0.0.1:")
            base_url = line.removeprefix("listening on ")
            # The second line is what a newcomer pastes: it must be the API's address.
            assert proc.stdout.readline().strip() == f"OPENAI_BASE_URL={base_url}/v1"

            async def ask() -> str:
                client = sdk_client(base_url + "/v1")
                try:
                    _, answer = await collect(make_chat(client))
                finally:
                    await client.close()
                return answer.text

            assert asyncio.run(ask()) == "from another process"
        finally:
            proc.terminate()
            proc.wait(timeout=HANG_GUARD_S)
