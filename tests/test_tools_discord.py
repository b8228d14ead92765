"""Approval of a tool's action in Discord: a message with two buttons (a component
interaction through the fake Discord and the real discord.py), pressed by the asker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from bot.core import Core
from bot.tool_loop import LoopLimits
from bot.tools.hub import ToolHub
from fakes.fake_discord import FakeDiscord
from fakes.fake_openai import FakeOpenAI, reply, tool_calls
from tests.support import (
    ALICE,
    BOB,
    DISCORD_WAIT_S,
    GENERAL,
    CoreFactory,
    fake_discord,
    mention,
    running_discord,
    settle,
)
from tests.tools_support import connected_hub, stdio_server, tools_config

__all__ = ["fake_discord"]  # the fixture, used by name

SAVE = ("save_note", {"title": "plan", "text": "ship it"})


@pytest_asyncio.fixture
async def hub() -> AsyncIterator[ToolHub]:
    cfg = tools_config(stdio_server(confirm=("save_note",)), enabled_in=("discord",))
    async with connected_hub(cfg) as connected:
        yield connected


async def tool_core(core_factory: CoreFactory, hub: ToolHub, wait_s: float = 30) -> Core:
    return await core_factory(tools=hub, tool_limits=LoopLimits(approval_timeout_s=wait_s))


def question_id(fake: FakeDiscord) -> str | None:
    for mid in fake.posted:
        if fake.buttons(mid):
            return mid
    return None


def results(fake: FakeOpenAI) -> list[str]:
    return [m["content"] for m in fake.chat_requests[1]["messages"] if m["role"] == "tool"]


async def run_case(
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    core: Core,
    presses: tuple[tuple[dict[str, str], bool], ...],
) -> list[dict[str, object]]:
    fake_openai.script(tool_calls(SAVE), reply("Done."))
    async with running_discord(fake_discord, core):
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "save my plan"), mentions=(fake_discord.bot,)
        )
        await fake_discord.wait_until(lambda: question_id(fake_discord) is not None, DISCORD_WAIT_S)
        mid = question_id(fake_discord)
        assert mid is not None
        buttons = fake_discord.buttons(mid)
        for who, yes in presses:
            custom_id = buttons[0 if yes else 1]["custom_id"]
            await fake_discord.press_button(mid, who, custom_id)
        await fake_openai.wait_for(lambda f: len(f.chat_requests) >= 2)
        await settle(core)
    return buttons


async def test_the_askers_allow_button_runs_the_action(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory, hub: ToolHub
) -> None:
    core = await tool_core(core_factory, hub)
    buttons = await run_case(fake_discord, fake_openai, core, ((BOB, True), (ALICE, True)))
    assert [b["label"] for b in buttons] == ["Allow", "Deny"]
    assert results(fake_openai) == ["saved note 'plan'"]
    assert question_id(fake_discord) is None  # the buttons were taken away once answered


async def test_the_deny_button_leaves_the_action_unrun(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory, hub: ToolHub
) -> None:
    core = await tool_core(core_factory, hub)
    await run_case(fake_discord, fake_openai, core, ((ALICE, False),))
    assert results(fake_openai) == ["error: the user denied this action"]


async def test_no_press_in_time_cancels_the_action(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory, hub: ToolHub
) -> None:
    core = await tool_core(core_factory, hub, wait_s=0.3)
    await run_case(fake_discord, fake_openai, core, ())
    assert results(fake_openai) == ["error: the user did not approve this action in time"]
