"""Approval of a tool's action in Slack: Allow/Deny buttons (Block Kit) and the
asker's press as a block action, through the fake Slack and the real slack_bolt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from bot.tool_loop import LoopLimits
from bot.tools.hub import ToolHub
from fakes.fake_openai import FakeOpenAI, reply, tool_calls
from fakes.fake_slack import FakeSlack, Posted
from tests.support import SLACK_CHANNEL, CoreFactory, fake_slack, running_slack, settle, until
from tests.tools_support import connected_hub, stdio_server, tools_config

__all__ = ["fake_slack"]  # the fixture, used by name

SAVE = ("save_note", {"title": "plan", "text": "ship it"})


@pytest_asyncio.fixture
async def hub() -> AsyncIterator[ToolHub]:
    cfg = tools_config(stdio_server(confirm=("save_note",)), enabled_in=("slack",))
    async with connected_hub(cfg) as connected:
        yield connected


def question(fake: FakeSlack) -> Posted | None:
    found = [p for p in fake.posted(SLACK_CHANNEL) if any(b["type"] == "actions" for b in p.blocks)]
    return found[0] if found else None


def buttons(posted: Posted) -> list[dict[str, Any]]:
    return [e for b in posted.blocks if b["type"] == "actions" for e in b["elements"]]


def results(fake: FakeOpenAI) -> list[str]:
    return [m["content"] for m in fake.chat_requests[1]["messages"] if m["role"] == "tool"]


async def run_case(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    hub: ToolHub,
    presses: tuple[tuple[str, bool], ...],
    wait_s: float = 30,
) -> Posted:
    core = await core_factory(tools=hub, tool_limits=LoopLimits(approval_timeout_s=wait_s))
    fake_openai.script(tool_calls(SAVE), reply("Done."))
    mention, twin = fake_slack.mention("save my plan")
    async with running_slack(fake_slack, core):
        await fake_slack.wait_ack(await fake_slack.push(mention))
        await fake_slack.wait_ack(await fake_slack.push(twin))
        await until(lambda: question(fake_slack) is not None, "the approval question")
        asked = question(fake_slack)
        assert asked is not None
        for user, yes in presses:
            await fake_slack.wait_ack(
                await fake_slack.press(
                    asked, buttons(asked)[0 if yes else 1]["action_id"], user=user
                )
            )
        await fake_openai.wait_for(lambda f: len(f.chat_requests) >= 2)
        await settle(core)
    return asked


async def test_the_askers_allow_button_runs_the_action(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory, hub: ToolHub
) -> None:
    presses = (("U0BOB", True), ("U0ALICE", True))  # Bob did not ask: his press is ignored
    asked = await run_case(fake_slack, fake_openai, core_factory, hub, presses)
    assert [b["text"]["text"] for b in buttons(asked)] == []  # answered: buttons removed
    assert results(fake_openai) == ["saved note 'plan'"]


async def test_the_deny_button_leaves_the_action_unrun(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory, hub: ToolHub
) -> None:
    await run_case(fake_slack, fake_openai, core_factory, hub, (("U0ALICE", False),))
    assert results(fake_openai) == ["error: the user denied this action"]


async def test_no_press_in_time_cancels_the_action(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory, hub: ToolHub
) -> None:
    asked = await run_case(fake_slack, fake_openai, core_factory, hub, (), wait_s=0.3)
    assert [b["text"]["text"] for b in buttons(asked)] == ["Allow", "Deny"]
    assert results(fake_openai) == ["error: the user did not approve this action in time"]


async def test_a_tools_output_in_the_status_line_pings_nobody(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory, hub: ToolHub
) -> None:
    core = await core_factory(tools=hub)
    fake_openai.script(tool_calls(("fail", {"reason": "<!channel> <@U0BOB> look"})), reply("Hm."))
    mention, twin = fake_slack.mention("try it")
    async with running_slack(fake_slack, core):
        await fake_slack.wait_ack(await fake_slack.push(mention))
        await fake_slack.wait_ack(await fake_slack.push(twin))
        await fake_openai.wait_for(lambda f: len(f.chat_requests) >= 2)
        await settle(core)
    shown = "\n".join(fake_slack.texts(SLACK_CHANNEL, thread_ts=mention["event"]["ts"]))
    assert "`fail` failed" in shown
    assert "<!channel>" not in shown and "<@U0BOB>" not in shown
