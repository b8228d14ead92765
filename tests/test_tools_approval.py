"""Actions (``confirm``) run only after the asker says yes; no, silence, or someone
else's yes leave them unrun, and the model is told which."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from adapters.console import ConsoleAdapter
from bot.config import ConsoleConfig
from bot.core import Core
from bot.tool_loop import LoopLimits
from bot.tools.hub import ToolHub
from fakes.fake_openai import FakeOpenAI, reply, tool_calls
from tests.support import CoreFactory, RecordingSink, message, settle, until
from tests.tools_support import connected_hub, stdio_server, tools_config

SAVE = ("save_note", {"title": "plan", "text": "ship it"})
READ: tuple[str, dict[str, Any]] = ("list_notes", {})


@pytest_asyncio.fixture
async def hub() -> AsyncIterator[ToolHub]:
    async with connected_hub(tools_config(stdio_server(confirm=("save_note",)))) as connected:
        yield connected


async def core_with(core_factory: CoreFactory, hub: ToolHub, approval_s: float = 30) -> Core:
    return await core_factory(tools=hub, tool_limits=LoopLimits(approval_timeout_s=approval_s))


def results(fake: FakeOpenAI, index: int) -> list[str]:
    body: dict[str, Any] = fake.chat_requests[index]
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def asked(sink: RecordingSink) -> bool:
    return any("wants to run `save_note`" in text for text in sink.texts)


async def test_the_askers_yes_runs_the_action(
    core_factory: CoreFactory, hub: ToolHub, fake_openai: FakeOpenAI
) -> None:
    core = await core_with(core_factory, hub)
    fake_openai.script(tool_calls(SAVE), tool_calls(READ), reply("Saved."))
    sink = RecordingSink()
    await core.handle(message("save my plan", author="alice"), sink)
    await until(lambda: asked(sink), "the approval question")
    await core.handle(message("!yes", author="bob"), sink)  # not the asker: no effect
    await core.handle(message("!yes", author="alice"), sink)
    await settle(core)
    assert results(fake_openai, 1) == ["saved note 'plan'"]
    assert results(fake_openai, 2)[-1] == "plan"  # the note really exists
    assert any("Allowed" in text for text in sink.texts)


async def test_no_leaves_the_action_unrun_and_tells_the_model(
    core_factory: CoreFactory, hub: ToolHub, fake_openai: FakeOpenAI
) -> None:
    core = await core_with(core_factory, hub)
    fake_openai.script(tool_calls(SAVE), tool_calls(READ), reply("Not saved."))
    sink = RecordingSink()
    await core.handle(message("save my plan"), sink)
    await until(lambda: asked(sink), "the approval question")
    await core.handle(message("!no"), sink)
    await settle(core)
    assert results(fake_openai, 1) == ["error: the user denied this action"]
    assert results(fake_openai, 2)[-1] == "(no notes)"
    assert sink.texts[-1] == "Not saved."


async def test_no_answer_in_time_cancels_the_action(
    core_factory: CoreFactory, hub: ToolHub, fake_openai: FakeOpenAI
) -> None:
    core = await core_with(core_factory, hub, approval_s=0.2)
    fake_openai.script(tool_calls(SAVE), reply("Timed out."))
    sink = RecordingSink()
    await core.handle(message("save my plan"), sink)
    await settle(core)
    assert results(fake_openai, 1) == ["error: the user did not approve this action in time"]
    assert any("No answer in time" in text for text in sink.texts)


async def test_tools_lists_what_this_conversation_can_use(core: Core) -> None:
    sink = RecordingSink()
    await core.handle(message("!tools"), sink)
    await settle(core)
    (text,) = sink.texts
    assert text.startswith("Tools in this conversation (✋: asks you before it runs):")
    assert "- `calculate` (notes): Evaluate an arithmetic expression" in text
    assert "- `save_note` ✋ (notes)" in text


@pytest_asyncio.fixture
async def core(core_factory: CoreFactory, hub: ToolHub) -> Core:
    return await core_with(core_factory, hub)


async def test_tools_says_when_tools_are_off(core_factory: CoreFactory) -> None:
    core = await core_factory()
    sink = RecordingSink()
    await core.handle(message("!tools"), sink)
    await settle(core)
    assert sink.texts == ["Tools are not enabled in this conversation."]


async def test_a_piped_yes_reaches_the_question_before_the_lines_held_behind_it(
    core_factory: CoreFactory, hub: ToolHub, fake_openai: FakeOpenAI
) -> None:
    """A pipe's questions wait for the answer before them, but its ``!yes`` goes in
    at once: the approval it answers is what that answer is waiting for."""
    core = await core_with(core_factory, hub)
    fake_openai.script(tool_calls(SAVE), reply("Saved."), reply("Next: ship it."))
    read_fd, write_fd = os.pipe()  # not a terminal
    out = io.StringIO()
    with os.fdopen(read_fd, "r", encoding="utf-8") as stdin:
        adapter = ConsoleAdapter(ConsoleConfig(), core, stdin, out)
        await adapter.start()
        os.write(write_fd, b"save my plan\nwhat next?\n")
        await until(lambda: "wants to run `save_note`" in out.getvalue(), "the approval question")
        os.write(write_fd, b"!yes\n")
        os.close(write_fd)
        await asyncio.wait_for(adapter.wait_closed(), 20.0)
    await settle(core)
    assert results(fake_openai, 1) == ["saved note 'plan'"]
    assert fake_openai.chat_requests[2]["messages"][-1]["content"] == "what next?"
    assert out.getvalue().index("Saved.") < out.getvalue().index("Next: ship it.")
