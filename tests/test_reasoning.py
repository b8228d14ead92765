"""Reasoning models: request fields, learning from a 400, thinking kept out of the chat.

The request side runs the real openai SDK against the fake OpenAI server, which
records each body; the chat side runs the real adapters (discord.py, slack_bolt)
against the fake platforms.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from bot.core import Core
from bot.indicator import TypingIndicator
from bot.llm import OpenAIChat
from bot.reasoning import MAX_KEPT_REASONING_CHARS, ThinkStripper, is_reasoning_model
from bot.types import Answer, ChatMessage, ConversationKey, PlatformLimits
from fakes.fake_discord import FakeDiscord
from fakes.fake_openai import FakeOpenAI, echo_last_user, reply, unsupported_parameter
from fakes.fake_slack import FakeSlack
from tests.support import (
    ALICE,
    GENERAL,
    CoreFactory,
    RecordingSink,
    answered,
    deliver,
    discord_texts,
    fake_discord,
    fake_slack,
    history,
    make_chat,
    mention,
    running_discord,
    running_slack,
)
from tests.support import SLACK_CHANNEL as CHANNEL

__all__ = ["fake_discord", "fake_slack"]  # fixtures, used by name


async def collect(chat: OpenAIChat) -> tuple[list[str], Answer]:
    answer = Answer()
    async with asyncio.timeout(HANG_GUARD_S):
        deltas = [d async for d in chat.stream(MESSAGES, answer)]
    return deltas, answer


MESSAGES: list[ChatMessage] = [{"role": "user", "content": "which colour?"}]
THINKING = "<think>The user wants a colour. Secret plan: say blue.</think>"
ANSWER = "The sky is blue."
HANG_GUARD_S = 5.0


# -- which models think ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("o1", True),
        ("o3-mini", True),
        ("o4-mini-2025-04-16", True),
        ("gpt-5", True),
        ("gpt-5-mini", True),
        ("openai/gpt-5-nano", True),
        ("deepseek-r1:14b", True),
        ("deepseek-reasoner", True),
        ("DeepSeek-R1-Distill-Qwen-7B", True),
        ("qwq-32b", True),
        ("gpt-4o-mini", False),
        ("gpt-4.1", False),
        ("llama3.1:8b", False),
        ("foo1", False),
    ],
)
def test_reasoning_models_are_known_by_name(model: str, expected: bool) -> None:
    assert is_reasoning_model(model) is expected


def test_the_config_overrides_the_name() -> None:
    assert is_reasoning_model("my-local-thinker", "on")
    assert not is_reasoning_model("o3-mini", "off")


# -- the think stripper --------------------------------------------------------------------


def strip_all(pieces: list[str]) -> tuple[str, str]:
    stripper = ThinkStripper()
    visible = [stripper.feed(piece).visible for piece in pieces]
    visible.append(stripper.finish().visible)
    return "".join(visible), stripper.thinking


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 100])
def test_thinking_is_removed_however_the_stream_is_cut(size: int) -> None:
    text = THINKING + ANSWER
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    visible, thinking = strip_all(pieces)
    assert visible == ANSWER
    assert thinking == "The user wants a colour. Secret plan: say blue."


def test_text_that_only_looks_like_a_tag_is_kept() -> None:
    visible, thinking = strip_all(["a <b> and x < y, ", "then <thin", "g> <th"])
    assert visible == "a <b> and x < y, then <thing> <th"
    assert thinking == ""


def test_an_unclosed_thought_hides_the_rest() -> None:
    visible, thinking = strip_all(["Hi. <think>never fini", "shed"])
    assert visible == "Hi. "
    assert thinking == "never finished"


def test_kept_thinking_is_bounded() -> None:
    stripper = ThinkStripper()
    stripper.feed("<think>" + "x" * (3 * MAX_KEPT_REASONING_CHARS))
    stripper.keep("more")
    assert len(stripper.thinking) == MAX_KEPT_REASONING_CHARS


# -- request fields (real SDK, fake server) --------------------------------------------


async def test_a_reasoning_model_gets_completion_tokens_and_effort_without_temperature(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(reply(ANSWER))
    chat = make_chat(openai_client, model="o3-mini", reasoning_effort="low")
    await collect(chat)
    (body,) = fake_openai.chat_requests
    assert body["max_completion_tokens"] == 128
    assert "max_tokens" not in body
    assert "temperature" not in body
    assert body["reasoning_effort"] == "low"


async def test_an_ordinary_model_keeps_temperature_and_no_effort(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(reply(ANSWER))
    await collect(make_chat(openai_client, model="gpt-4o-mini", reasoning_effort="high"))
    (body,) = fake_openai.chat_requests
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 128  # the fake is not an OpenAI host
    assert "reasoning_effort" not in body


async def test_reasoning_off_in_config_overrides_the_name(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(reply(ANSWER))
    await collect(make_chat(openai_client, model="o3-mini", reasoning="off"))
    (body,) = fake_openai.chat_requests
    assert body["temperature"] == 0.3
    assert "max_completion_tokens" not in body


async def test_a_rejected_effort_is_dropped_once_and_remembered(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(unsupported_parameter("reasoning_effort"), reply(ANSWER), reply(ANSWER))
    chat = make_chat(openai_client, model="my-thinker", reasoning="on", reasoning_effort="high")
    deltas, _ = await collect(chat)
    assert "".join(deltas) == ANSWER
    await collect(chat)  # the next answer does not ask again
    first, second, third = fake_openai.chat_requests
    assert first["reasoning_effort"] == "high"
    assert "reasoning_effort" not in second
    assert "reasoning_effort" not in third


async def test_a_rejected_temperature_is_learned_for_a_model_the_name_missed(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(unsupported_parameter("temperature"), reply(ANSWER), reply(ANSWER))
    chat = make_chat(openai_client, model="some-new-thinker")
    await collect(chat)
    await collect(chat)
    first, second, third = fake_openai.chat_requests
    assert first["temperature"] == 0.3
    assert "temperature" not in second and "temperature" not in third


async def test_think_tags_split_across_chunks_never_reach_the_answer(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(reply(THINKING + ANSWER, chunks=40))
    deltas, answer = await collect(make_chat(openai_client))
    assert "".join(deltas) == ANSWER == answer.text
    assert "Secret plan" in answer.reasoning


async def test_reasoning_fields_are_kept_apart_from_the_answer(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(reply(ANSWER, thinking=("Let me ", "think."), thinking_field="reasoning"))
    deltas, answer = await collect(make_chat(openai_client))
    assert "".join(deltas) == ANSWER
    assert answer.reasoning == "Let me think."


# -- the typing indicator stays up while the model thinks ---------------------------------


class ThinkingWatcher(RecordingSink):
    """Sets ``shown_thrice`` at the third typing call."""

    def __init__(self) -> None:
        super().__init__(PlatformLimits(max_len=2000, can_edit=True, typing_refresh_s=0.01))
        self.shown_thrice = asyncio.Event()

    async def typing(self) -> None:
        await super().typing()
        if self.typing_calls >= 3:
            self.shown_thrice.set()


async def test_the_typing_indicator_is_shown_again_until_the_answer_begins() -> None:
    sink = ThinkingWatcher()
    tasks: set[asyncio.Task[None]] = set()
    typing = TypingIndicator(sink, tasks, delay_s=0.0)
    await asyncio.wait_for(sink.shown_thrice.wait(), HANG_GUARD_S)
    await typing.settle()
    shown = sink.typing_calls
    await asyncio.sleep(0.05)  # no timer left: nothing may show it again
    assert sink.typing_calls == shown
    assert not tasks


# -- in the chat: thinking never shown, never stored ---------------------------------------


def reasoning_reply(body: dict[str, Any]) -> str:
    return THINKING + "Echo: " + echo_last_user(body)


async def test_discord_shows_only_the_answer_and_history_has_no_thinking(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core: Core = await core_factory(model_name="o3-mini")
    fake_openai.script(reply(reasoning_reply, chunks=30), reply(reasoning_reply, chunks=30))
    async with running_discord(fake_discord, core):
        for count, text in enumerate(("what colour?", "and again?"), start=1):
            await fake_discord.send_message(
                GENERAL, ALICE, mention(fake_discord, text), mentions=(fake_discord.bot,)
            )
            await answered(fake_discord, core, GENERAL, count)
    assert discord_texts(fake_discord, GENERAL) == [
        "Echo: Alice: what colour?",
        "Echo: Alice: and again?",
    ]
    second = fake_openai.chat_requests[1]
    assert not any("Secret" in str(m["content"]) for m in second["messages"])
    assert "temperature" not in second


async def test_discord_shows_the_thinking_collapsed_when_asked(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core: Core = await core_factory(show_reasoning=True)
    fake_openai.script(reply(THINKING + ANSWER, chunks=10))
    async with running_discord(fake_discord, core):
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "colour?"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, core, GENERAL, 2)
    note, answer = discord_texts(fake_discord, GENERAL)
    assert note.startswith("-# 💭 Thought: ||") and note.endswith("||")
    assert "Secret plan: say blue." in note
    assert answer == ANSWER


async def test_slack_shows_the_thinking_as_a_context_block_when_asked(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core: Core = await core_factory(show_reasoning=True)
    fake_openai.script(reply(ANSWER, thinking=("Compare <b> & ", "pick blue.")))
    body, _ = fake_slack.mention("colour?")
    ts = body["event"]["ts"]
    async with running_slack(fake_slack, core) as adapter:
        await deliver(fake_slack, adapter, core, body)
    note, answer = fake_slack.posted(CHANNEL, ts)
    (block,) = note.blocks
    assert block["type"] == "context"
    assert block["elements"][0]["text"] == "_Thought:_ Compare &lt;b&gt; &amp; pick blue."
    assert answer.text == ANSWER
    turns = await history(core.store, ConversationKey("slack", fake_slack.team_id, CHANNEL, ts))
    assert [t.content for t in turns if t.role == "assistant"] == [ANSWER]
