"""Who may reset or re-prompt a conversation, through the real core and openai SDK."""

from __future__ import annotations

import logging

import pytest

from bot.core import Core
from bot.texts import Texts
from bot.tokens import TokenCounter, token_counter_for
from fakes.fake_openai import FakeOpenAI, echo_last_user
from tests.support import CoreFactory, RecordingSink, message, settle

EN = Texts("en")
KO = Texts("ko")


def contents(fake: FakeOpenAI) -> str:
    return " ".join(str(m["content"]) for m in fake.chat_requests[-1]["messages"])


async def test_reset_policy_admins_denies_others_and_forgets_nothing(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_fn = echo_last_user
    core = await core_factory(reset_policy="admins")
    sink = RecordingSink()
    await core.handle(message("remember banana"), sink)
    await settle(core)
    await core.handle(message("!reset", admin=False), sink)
    await core.handle(message("what did I say?"), sink)
    await settle(core)
    assert sink.texts[1] == EN.get("reset_denied")
    assert "banana" in contents(fake_openai)  # the history is still there

    await core.handle(message("!reset", admin=True), sink)
    await core.handle(message("and now?"), sink)
    await settle(core)
    assert sink.texts[3] == EN.get("reset_done")
    assert "banana" not in contents(fake_openai)


async def test_reset_in_a_dm_is_always_the_persons_own(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply_fn = echo_last_user
    core = await core_factory(reset_policy="admins", language="ko")
    sink = RecordingSink()
    await core.handle(message("remember kiwi", is_dm=True), sink)
    await settle(core)
    await core.handle(message("!reset", is_dm=True), sink)
    await core.handle(message("anything?", is_dm=True), sink)
    await settle(core)
    assert sink.texts[1] == KO.get("reset_done")
    assert "kiwi" not in contents(fake_openai)


async def test_reset_policy_anyone_is_the_default(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory()
    sink = RecordingSink()
    await core.handle(message("!reset", admin=False), sink)
    await settle(core)
    assert sink.texts == [EN.get("reset_done")]


async def test_system_prompt_policy_nobody_says_it_is_turned_off(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(policy="nobody")
    sink = RecordingSink()
    await core.handle(message("!system Be a pirate.", admin=True), sink)
    await core.handle(message("!system Be a pirate.", is_dm=True), sink)
    await core.handle(message("!system clear", admin=True), sink)
    await settle(core)
    assert sink.texts == [EN.get("system_disabled")] * 3
    assert await core.store.get_system_prompt(message("x").key.as_str()) is None


class ExplodingCounter:
    """A token counter that fails on one text, as a broken tokenizer file would."""

    def __init__(self, real: TokenCounter, trigger: str) -> None:
        self._real, self._trigger = real, trigger
        self.encoding_name = real.encoding_name

    def count(self, text: str) -> int:
        if self._trigger in text:
            raise RuntimeError("tokenizer broke")
        return self._real.count(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        return self._real.truncate(text, max_tokens)


async def test_a_failure_while_building_the_prompt_gets_the_error_reply(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    exploding = ExplodingCounter(token_counter_for("gpt-4o-mini"), "KABOOM")
    core = await core_factory(policy="anyone", counter=exploding)
    sink = RecordingSink()
    await core.handle(message("!system KABOOM rules"), sink)
    await core.handle(message("hello?", message_id="m-broken"), sink)
    await settle(core)
    assert sink.texts == [EN.get("system_set"), EN.get("error_internal")]
    assert fake_openai.request_count == 0
    conv = message("x").key.as_str()
    assert await core.store.pending_turn(conv, "m-broken") is None  # marked done
    await core.handle(message("!system clear"), sink)
    await core.handle(message("and now?"), sink)
    await settle(core)
    assert len(sink.texts) == 4 and fake_openai.request_count == 1  # the next one works


async def test_a_budget_too_small_for_the_history_still_answers(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    """Config refuses such a budget (test_config); the core must not fail on it anyway:
    the trimmer cut a remembered history with less than no room (an IndexError)."""
    core = await core_factory(context_tokens=110, max_output_tokens=100)
    sink = RecordingSink()
    for text in ("first", "second", "third"):
        await core.handle(message(text), sink)
        await settle(core)
    assert len(sink.texts) == 3 and fake_openai.request_count == 3
    assert EN.get("error_internal") not in sink.texts


async def test_a_message_reset_before_its_answer_is_dropped_quietly(
    memory_core: Core, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    await memory_core.handle(message("remember kiwi"), sink)
    await memory_core.handle(message("!reset"), sink)  # before the answer's turn came
    await settle(memory_core)
    assert sink.texts == [EN.get("reset_done")]
    assert fake_openai.request_count == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
