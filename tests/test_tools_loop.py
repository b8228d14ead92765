"""The tool loop end to end: core → real openai SDK → fake model that scripts tool
calls → the example MCP server over stdio (the real mcp SDK) → results → model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest_asyncio

from bot.core import Core
from bot.tool_loop import LoopLimits
from bot.tools.hub import ToolHub
from fakes.fake_openai import FakeOpenAI, reply, tool_calls
from tests.support import CoreFactory, RecordingSink, message, settle
from tests.tools_support import connected_hub, stdio_server, tools_config

LIMITS = LoopLimits(max_rounds=3, call_timeout_s=10, total_timeout_s=30, result_tokens=50)


@pytest_asyncio.fixture
async def hub() -> AsyncIterator[ToolHub]:
    cfg = tools_config(stdio_server(confirm=("save_note",)), enabled_in=("console",))
    async with connected_hub(cfg) as connected:
        yield connected


@pytest_asyncio.fixture
async def core(core_factory: CoreFactory, hub: ToolHub) -> Core:
    return await core_factory(tools=hub, tool_limits=LIMITS)


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or []]


async def test_a_single_call_runs_and_its_result_goes_back_to_the_model(
    core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(
        tool_calls(("calculate", {"expression": "6 * 7"})), reply("The answer is 42.")
    )
    sink = RecordingSink()
    await core.handle(message("what is 6 times 7?"), sink)
    await settle(core)
    first, second = fake_openai.chat_requests
    assert "calculate" in tool_names(first) and "save_note" in tool_names(first)
    assert tool_messages(first) == []
    assistant = second["messages"][-2]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"][0]["function"] == {
        "name": "calculate",
        "arguments": json.dumps({"expression": "6 * 7"}),
    }
    assert tool_messages(second) == [{"role": "tool", "tool_call_id": "call_0", "content": "42"}]
    assert sink.texts[-1] == "The answer is 42."
    assert any("calculate" in text for text in sink.texts[:-1])  # the status line


async def test_parallel_calls_malformed_arguments_and_unknown_tools_all_get_results(
    core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(
        tool_calls(
            ("calculate", {"expression": "1 + 1"}),
            ("calculate", '{"expression": "2 +'),  # cut-off JSON
            ("delete_everything", {}),
            ("calculate", {"expression": "3 * 3"}),
        ),
        reply("Done."),
    )
    sink = RecordingSink()
    await core.handle(message("sums"), sink)
    await settle(core)
    results = tool_messages(fake_openai.chat_requests[1])
    assert [r["tool_call_id"] for r in results] == ["call_0", "call_1", "call_2", "call_3"]
    assert results[0]["content"] == "2"
    assert results[1]["content"].startswith("error: the arguments are not valid JSON")
    assert results[2]["content"] == "error: there is no tool named 'delete_everything'"
    assert results[3]["content"] == "9"
    assert sink.texts[-1] == "Done."


async def test_a_tool_error_reaches_the_model_and_the_user_sees_it_briefly(
    core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(tool_calls(("fail", {"reason": "disk on fire"})), reply("It failed."))
    sink = RecordingSink()
    await core.handle(message("try it"), sink)
    await settle(core)
    (result,) = tool_messages(fake_openai.chat_requests[1])
    assert result["content"] == "Error executing tool fail: disk on fire"
    assert any("`fail` failed" in text for text in sink.texts)
    assert not any("Traceback" in text for text in sink.texts)


async def test_a_model_that_never_stops_calling_tools_is_cut_off_after_max_rounds(
    core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.default = tool_calls(("calculate", {"expression": "1"}))
    sink = RecordingSink()
    await core.handle(message("loop forever"), sink)
    await settle(core)
    requests = fake_openai.chat_requests
    assert len(requests) == LIMITS.max_rounds + 1
    assert all(tool_names(body) for body in requests[:-1])
    assert "tools" not in requests[-1]  # the last round offers none: answer in words
    assert len(tool_messages(requests[-1])) == LIMITS.max_rounds
    assert any("limit of tool rounds" in text for text in sink.texts)


async def test_a_long_result_is_cut_to_the_token_budget_with_a_note(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    async with connected_hub(tools_config(stdio_server())) as hub:  # nothing to confirm
        core = await core_factory(tools=hub, tool_limits=LIMITS)
        fake_openai.script(
            tool_calls(("save_note", {"title": "long", "text": "word " * 400})),
            tool_calls(("read_note", {"title": "long"})),
            reply("It is long."),
        )
        await core.handle(message("save and read"), RecordingSink())
        await settle(core)
    (result,) = tool_messages(fake_openai.chat_requests[2])[-1:]
    kept, note = result["content"].split("\n\n")
    assert kept.startswith("word word") and len(kept) < 400  # the 2000 chars were cut
    assert note.startswith("[Result shortened: 50 of ")


async def test_a_slow_call_times_out_and_the_model_is_told(
    core_factory: CoreFactory, hub: ToolHub, fake_openai: FakeOpenAI
) -> None:
    limits = LoopLimits(call_timeout_s=0.5, total_timeout_s=30)
    core = await core_factory(tools=hub, tool_limits=limits)
    fake_openai.script(
        tool_calls(("wait", {"seconds": 30}), ("calculate", {"expression": "1 + 2"})),
        reply("One was slow."),
    )
    sink = RecordingSink()
    await core.handle(message("wait and add"), sink)
    await settle(core)
    slow, quick = tool_messages(fake_openai.chat_requests[1])
    assert slow["content"] == "error: the tool did not answer within 0.5s"
    assert quick["content"] == "3"
    assert sink.texts[-1] == "One was slow."


async def test_tools_are_off_where_they_are_not_enabled(
    core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(reply("plain"))
    other = message("hi")
    slack_msg = replace(other, key=replace(other.key, platform="slack"))
    await core.handle(slack_msg, RecordingSink())
    await settle(core)
    assert "tools" not in fake_openai.chat_requests[0]


async def test_tool_calls_and_results_are_in_the_history_of_the_next_answer(
    core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(
        tool_calls(("calculate", {"expression": "2 ** 10"})), reply("1024."), reply("Yes.")
    )
    sink = RecordingSink()
    await core.handle(message("2 to the 10th?"), sink)
    await settle(core)
    await core.handle(message("was that from the calculator?"), sink)
    await settle(core)
    follow_up = fake_openai.chat_requests[2]["messages"]
    roles = [m["role"] for m in follow_up]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert follow_up[2]["tool_calls"][0]["function"]["name"] == "calculate"
    assert follow_up[3] == {"role": "tool", "tool_call_id": "call_0", "content": "1024"}
    assert follow_up[4] == {"role": "assistant", "content": "1024."}
