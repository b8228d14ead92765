"""Tool calls and results live in history on every backend (memory, SQLite with its
v6 migration, PostgreSQL with its v2), and the next answer's prompt shows them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.context import build_messages
from bot.tokens import token_counter_for
from bot.tools.hub import ToolHub
from bot.types import Turn
from fakes.fake_openai import FakeOpenAI, reply, tool_calls
from tests.store_support import KINDS, AnyStore, FakeClock, answer, opened_store, user
from tests.support import CoreFactory, RecordingSink, message, settle
from tests.tools_support import connected_hub, stdio_server, tools_config

EXCHANGE = json.dumps(
    [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0"}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "42"},
    ]
)


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnyStore]:
    async with opened_store(request.param, tmp_path, FakeClock()) as opened:
        yield opened


async def test_an_answers_tool_exchange_round_trips(store: AnyStore) -> None:
    asked = await store.add_user_turn("c", user("m1"))
    assert asked is not None
    await store.add_assistant_turn("c", replace(answer(asked), tools=EXCHANGE))
    await store.add_user_turn("c", user("m2"))
    turns = await store.recent_turns("c", 10**9, 10)
    assert [t.tools for t in turns] == [None, EXCHANGE, None]


async def test_the_next_prompt_holds_the_stored_tool_calls_and_results(
    store: AnyStore, core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    async with connected_hub(tools_config(stdio_server())) as hub:
        await _ask_twice(hub, store, core_factory, fake_openai)
    follow_up = fake_openai.chat_requests[2]["messages"]
    assert [m["role"] for m in follow_up] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert follow_up[2]["tool_calls"][0]["function"]["name"] == "calculate"
    assert follow_up[3] == {"role": "tool", "tool_call_id": "call_0", "content": "81"}


async def _ask_twice(
    hub: ToolHub, store: AnyStore, core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(store=store, tools=hub)
    fake_openai.script(
        tool_calls(("calculate", {"expression": "9 * 9"})), reply("81."), reply("Yes.")
    )
    sink = RecordingSink()
    await core.handle(message("9 squared?"), sink)
    await settle(core)
    await core.handle(message("did you use a tool?"), sink)
    await settle(core)


def _turns(exchange_tokens: int) -> list[Turn]:
    return [
        Turn("user", "what is 9 * 9?", 8, author_name="Ann", id=1),
        Turn("assistant", "81.", 2 + exchange_tokens, id=2, reply_to=1, tools=EXCHANGE),
        Turn("user", "thanks", 2, author_name="Ann", id=3),
    ]


def test_a_stored_exchange_is_trimmed_with_its_answer_never_alone() -> None:
    counter = token_counter_for("gpt-4o-mini")
    cost = counter.count(EXCHANGE)
    roomy, _ = build_messages("sys", _turns(cost), 1000, counter, group=True, shortened_note="")
    assert [m["role"] for m in roomy] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    # Room for the question but not for the answer with its tool calls: both go.
    tight, stats = build_messages("sys", _turns(cost), 60, counter, group=True, shortened_note="")
    assert [m["role"] for m in tight] == ["system", "user"]
    assert stats.dropped_turns == 2
