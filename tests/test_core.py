"""The core end to end: message → history → real openai SDK → fake server → sink."""

from __future__ import annotations

import asyncio
from typing import get_args

import pytest

from bot.core import Core
from bot.errors import LLMErrorKind, ShuttingDown
from bot.indicator import TYPING_DELAY_S
from bot.texts import Texts
from bot.types import ChatMessage
from fakes.fake_model import FakeModel, echoes, fails, says
from fakes.fake_openai import (
    FakeOpenAI,
    dropped,
    reply,
    server_error,
    slow_first_token,
)
from storage.memory import MemoryStore
from tests.support import CoreFactory, RecordingSink, message, settle, until

EN = Texts("en")


def user_contents(body: dict[str, object]) -> list[str]:
    msgs = body["messages"]
    assert isinstance(msgs, list)
    return [m["content"] for m in msgs if m["role"] == "user"]


def said(messages: list[ChatMessage], role: str = "user") -> list[str]:
    """The contents of one role's messages in a call to the fake model."""
    return [m["content"] for m in messages if m["role"] == role]


async def test_a_slow_answer_shows_typing_before_its_first_text(
    memory_core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(reply("Thinking took a while.", ttft_s=TYPING_DELAY_S + 0.3))
    sink = RecordingSink()
    sink.typing_delay_s = 0.2  # the platform is slow to confirm: the text still waits
    await memory_core.handle(message("hard question"), sink)
    await settle(memory_core)
    assert sink.texts == ["Thinking took a while."]
    assert sink.typing_calls == 1
    assert sink.calls[:3] == ["typing", "typing done", "send"]


async def test_a_failing_typing_call_costs_nothing(
    memory_core: Core, fake_openai: FakeOpenAI
) -> None:
    class BrokenTyping(RecordingSink):
        async def typing(self) -> None:
            await super().typing()
            raise RuntimeError("typing endpoint down")

    fake_openai.script(reply("Still here.", ttft_s=TYPING_DELAY_S + 0.1))
    sink = BrokenTyping()
    await memory_core.handle(message("hello?"), sink)
    await settle(memory_core)
    assert sink.typing_calls == 1
    assert sink.texts == ["Still here."]


async def test_answer_is_streamed_into_the_sink_and_stored(
    memory_core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(reply("Paris is the capital of France.", chunks=5))
    sink = RecordingSink()
    msg = message("capital of France?")
    await memory_core.handle(msg, sink)
    await settle(memory_core)

    assert sink.texts == ["Paris is the capital of France."]
    assert sink.typing_calls == 0  # the text came at once: no indicator needed
    turns = await memory_core.store.recent_turns(msg.key.as_str(), 10**9, 10)
    assert [(t.role, t.content) for t in turns] == [
        ("user", "capital of France?"),
        ("assistant", "Paris is the capital of France."),
    ]
    body = fake_openai.chat_requests[0]
    assert body["stream"] is True
    assert body["messages"][0]["role"] == "system"
    assert "You are a test bot." in body["messages"][0]["content"]


async def test_history_is_sent_in_order_and_authors_are_told_apart(
    model_core: Core, fake_model: FakeModel
) -> None:
    fake_model.script(says("first answer"), says("second answer"))
    sink = RecordingSink()
    await model_core.handle(message("hello", author="alice"), sink)
    await settle(model_core)
    await model_core.handle(message("and me?", author="bob"), sink)
    await settle(model_core)

    second = fake_model.calls[1]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == "first answer"
    first_user, second_user = said(second)
    assert "Alice" in first_user and first_user.endswith("hello")
    assert "Bob" in second_user and second_user.endswith("and me?")


async def test_two_quick_messages_are_answered_in_order_never_interleaved(
    model_core: Core, fake_model: FakeModel
) -> None:
    gate = asyncio.Event()  # the first answer is still being written when all three arrive
    fake_model.default = echoes(gate=gate)
    sink = RecordingSink()
    await model_core.handle(message("one", is_dm=True), sink)
    await model_core.handle(message("two", is_dm=True), sink)
    await model_core.handle(message("three", is_dm=True), sink)
    gate.set()
    await settle(model_core)

    assert sink.texts == ["one", "two", "three"]
    # Each request was made after the previous answer was stored, and holds it.
    third = fake_model.calls[2]
    assert [m["content"] for m in third[1:]] == ["one", "one", "two", "two", "three"]


async def test_different_conversations_run_concurrently(
    model_core: Core, fake_model: FakeModel
) -> None:
    gate = asyncio.Event()  # no answer can finish until all five calls are in
    fake_model.default = says("slow", gate=gate)
    sinks = [RecordingSink(pace_key=f"c{i}") for i in range(5)]
    for i, sink in enumerate(sinks):
        await model_core.handle(message(f"q{i}", channel=f"c{i}"), sink)
    # All five requests reach the model before any of them has finished.
    await until(lambda: fake_model.active == 5, "five calls at once")
    assert fake_model.finished == 0
    gate.set()
    await settle(model_core)
    assert all(s.texts == ["slow"] for s in sinks)


async def test_conversations_do_not_leak_into_each_other(
    model_core: Core, fake_model: FakeModel
) -> None:
    sink_a, sink_b = RecordingSink(), RecordingSink()
    await model_core.handle(message("secret of channel A", channel="A"), sink_a)
    await settle(model_core)
    await model_core.handle(message("question in thread", channel="A", thread="t1"), sink_b)
    await model_core.handle(message("question in B", channel="B"), sink_b)
    await settle(model_core)
    assert fake_model.call_count == 3
    for messages in fake_model.calls[1:]:
        assert not any("secret" in c for c in said(messages))


async def test_redelivered_message_is_answered_once(
    model_core: Core, fake_model: FakeModel
) -> None:
    sink = RecordingSink()
    msg = message("hello", message_id="ev-1")
    await asyncio.gather(*(model_core.handle(msg, sink) for _ in range(3)))
    await settle(model_core)
    await model_core.handle(msg, sink)
    await settle(model_core)
    assert len(sink.messages) == 1
    assert fake_model.call_count == 1


async def test_unaddressed_messages_outside_the_bots_threads_are_ignored(
    model_core: Core, fake_model: FakeModel
) -> None:
    sink = RecordingSink()
    await model_core.handle(message("chatter", addressed=False), sink)
    await model_core.handle(
        message("not my thread", thread="t9", in_thread=True, addressed=False), sink
    )
    await settle(model_core)
    assert sink.messages == [] and fake_model.call_count == 0


async def test_follow_up_in_the_bots_thread_needs_no_address(
    model_core: Core, fake_model: FakeModel
) -> None:
    sink = RecordingSink()
    await model_core.handle(message("@bot start", thread="t1"), sink)
    await settle(model_core)
    await model_core.handle(
        message("follow-up", thread="t1", in_thread=True, addressed=False), sink
    )
    await settle(model_core)
    assert fake_model.call_count == 2
    assert len(sink.messages) == 2


HAIKU = "You only speak in haiku."


async def test_system_command_is_denied_to_someone_not_an_admin(
    model_core: Core, fake_model: FakeModel
) -> None:
    sink = RecordingSink()
    await model_core.handle(message(f"!system {HAIKU}", admin=False), sink)
    await model_core.handle(message("a question"), sink)
    await settle(model_core)
    assert sink.texts[0] == EN.get("system_denied")
    assert "haiku" not in fake_model.calls[-1][0]["content"]


async def test_system_command_sets_shows_and_applies_the_prompt(
    model_core: Core, fake_model: FakeModel
) -> None:
    sink = RecordingSink()
    await model_core.handle(message(f"!system {HAIKU}", admin=True), sink)
    await model_core.handle(message("!system"), sink)
    await model_core.handle(message("a question"), sink)
    await settle(model_core)
    assert sink.texts[0] == EN.get("system_set")
    assert sink.texts[1] == EN.get("system_show", prompt=HAIKU)
    assert "haiku" in fake_model.calls[-1][0]["content"]


async def test_reset_forgets_what_was_said(model_core: Core, fake_model: FakeModel) -> None:
    sink = RecordingSink()
    await model_core.handle(message("remember banana"), sink)
    await settle(model_core)
    await model_core.handle(message("!reset"), sink)
    await model_core.handle(message("what did I say?"), sink)
    await settle(model_core)
    assert sink.texts[1] == EN.get("reset_done")
    assert not any("banana" in c for c in said(fake_model.calls[-1]))  # reset forgot it


async def test_system_clear_removes_the_stored_prompt(model_core: Core) -> None:
    sink = RecordingSink()
    await model_core.handle(message(f"!system {HAIKU}", admin=True), sink)
    await model_core.handle(message("!system clear", admin=True), sink)
    await settle(model_core)
    assert sink.texts[-1] == EN.get("system_cleared")
    assert await model_core.store.get_system_prompt(message("x").key.as_str()) is None


async def test_help_lists_the_commands(model_core: Core) -> None:
    sink = RecordingSink()
    await model_core.handle(message("!help"), sink)
    await settle(model_core)
    assert "!reset" in sink.texts[-1]


async def test_unknown_command_is_named_back(model_core: Core, fake_model: FakeModel) -> None:
    sink = RecordingSink()
    await model_core.handle(message("!frobnicate"), sink)
    await settle(model_core)
    assert sink.texts[-1] == EN.get("unknown_command", command="frobnicate", prefix="!")
    assert fake_model.call_count == 0


async def test_system_prompt_persists_in_sqlite(
    core_factory: CoreFactory, fake_openai: FakeOpenAI, tmp_path: object
) -> None:
    from storage.sqlite import SqliteStore

    path = f"{tmp_path}/bot.db"
    store = SqliteStore(path)
    await store.open()
    core = await core_factory(store, policy="anyone")
    sink = RecordingSink()
    await core.handle(message("!system Be brief."), sink)
    await core.handle(message("first"), sink)
    await settle(core)
    await core.close()
    await store.close()

    store2 = SqliteStore(path)
    await store2.open()
    core2 = await core_factory(store2)
    await core2.handle(message("second"), sink)
    await settle(core2)
    last = fake_openai.chat_requests[-1]
    assert "Be brief." in last["messages"][0]["content"]
    assert any(c.endswith("first") for c in user_contents(last))
    await core2.close()
    await store2.close()


async def test_empty_or_invisible_message_gets_a_clear_answer_and_no_model_call(
    model_core: Core, fake_model: FakeModel
) -> None:
    sink = RecordingSink()
    for text in ("", "   \n\t ", "\u200b\u200b", "\x00\x07\x1b"):
        await model_core.handle(message(text), sink)
    await settle(model_core)
    assert sink.texts == [EN.get("empty_message")] * 4
    assert fake_model.call_count == 0


async def test_an_invisible_character_does_not_hide_a_command(model_core: Core) -> None:
    sink = RecordingSink()
    await model_core.handle(message("!re\u200bset"), sink)
    await settle(model_core)
    assert sink.texts[0] == EN.get("reset_done")


async def test_control_and_invisible_characters_never_reach_the_model(
    model_core: Core, fake_model: FakeModel
) -> None:
    sink = RecordingSink()
    await model_core.handle(message("he\x00llo\u200b there"), sink)
    await settle(model_core)
    assert said(fake_model.calls[0])[-1].endswith("hello there")


async def test_huge_message_is_shortened_with_a_visible_note(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(context_tokens=4000, max_output_tokens=500)
    sink = RecordingSink()
    await core.handle(message("word " * 20_000), sink)
    await settle(core)
    assert len(sink.messages) == 1
    newest = user_contents(fake_openai.chat_requests[0])[-1]
    assert "tokens were cut" in newest
    assert len(newest) < 4000 * 8


async def test_old_turns_are_trimmed_by_tokens(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(context_tokens=700, max_output_tokens=200)
    fake_openai.default = reply("ok")
    sink = RecordingSink()
    for i in range(30):
        await core.handle(message(f"message number {i} " + "x " * 30), sink)
    await settle(core)
    last = fake_openai.chat_requests[-1]
    contents = user_contents(last)
    assert "message number 29" in contents[-1]
    assert not any("message number 0 " in c for c in contents)
    assert len(contents) > 3  # many short turns still fit


async def test_model_failure_gets_a_short_reply_and_the_next_message_works(
    memory_core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(server_error(), server_error(), server_error())
    sink = RecordingSink()
    msg = message("hello?")
    await memory_core.handle(msg, sink)
    await settle(memory_core)
    assert sink.texts == [EN.get("error_unavailable")]

    await memory_core.handle(message("again"), sink)
    await settle(memory_core)
    assert sink.texts[-1] == "Hello from the fake model. This answer is streamed in small pieces."
    turns = await memory_core.store.recent_turns(msg.key.as_str(), 10**9, 10)
    assert [t.role for t in turns] == ["user", "user", "assistant"]


async def test_stream_cut_mid_answer_keeps_partial_text_and_says_so(
    memory_core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.script(dropped(2, text="one two three four five six", chunks=6))
    sink = RecordingSink()
    msg = message("tell me")
    await memory_core.handle(msg, sink)
    await settle(memory_core)
    shown = "\n".join(sink.texts)
    assert shown.startswith("one two")
    assert EN.get("error_interrupted") in shown
    turns = await memory_core.store.recent_turns(msg.key.as_str(), 10**9, 10)
    assert [t.role for t in turns] == ["user"]  # no half-written answer stored


async def test_timeout_before_first_token(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(request_timeout_s=0.5, max_retries=0)
    fake_openai.script(slow_first_token(3.0))
    sink = RecordingSink()
    await core.handle(message("anyone there?"), sink)
    await settle(core)
    assert sink.texts == [EN.get("error_timeout")]


async def test_korean_texts(core_factory: CoreFactory, fake_openai: FakeOpenAI) -> None:
    core = await core_factory(language="ko")
    sink = RecordingSink()
    await core.handle(message("!reset"), sink)
    await settle(core)
    assert sink.texts == [Texts("ko").get("reset_done")]


async def test_close_lets_answers_in_flight_finish(
    memory_core: Core, fake_openai: FakeOpenAI
) -> None:
    fake_openai.default = reply("finished", ttft_s=0.2)
    sink = RecordingSink()
    await memory_core.handle(message("slow one"), sink)
    await memory_core.close(grace_s=5.0)
    assert sink.texts == ["finished"]
    # Refused, not silently dropped: the adapter must not acknowledge it.
    with pytest.raises(ShuttingDown):
        await memory_core.handle(message("after close"), sink)
    assert fake_openai.request_count == 1


async def test_lanes_release_idle_conversations(memory_core: Core, fake_openai: FakeOpenAI) -> None:
    sink = RecordingSink()
    for i in range(50):
        await memory_core.handle(message(f"hi {i}", channel=f"c{i}"), sink)
    await settle(memory_core)
    assert memory_core.busy_conversations == 0


async def test_memory_store_is_the_default_for_these_tests(memory_core: Core) -> None:
    assert isinstance(memory_core.store, MemoryStore)


async def test_one_person_cannot_spend_the_whole_budget(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(user_messages_per_minute=3)
    sink = RecordingSink()
    for i in range(5):
        await core.handle(message(f"question {i}", author="greedy"), sink)
    await core.handle(message("my turn", author="patient"), sink)
    await core.handle(message("!help", author="greedy"), sink)  # commands count too
    await settle(core)
    limited = [t for t in sink.texts if "faster than I can answer" in t]
    assert len(limited) == 1  # one notice per window, however many messages follow
    assert fake_openai.request_count == 4  # 3 from greedy, 1 from patient
    assert not [t for t in sink.texts if "!reset" in t]  # the limited !help got nothing


async def test_redelivered_messages_do_not_use_up_the_persons_allowance(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(user_messages_per_minute=2)
    sink = RecordingSink()
    first = message("question one", author="alice")
    await core.handle(first, sink)
    await core.handle(first, sink)  # a retry while the answer is being written
    await settle(core)
    for _ in range(3):  # retries after it was answered (Slack retries, a resume)
        await core.handle(first, sink)
    await core.handle(message("question two", author="alice"), sink)
    await settle(core)
    assert not [t for t in sink.texts if "faster than I can answer" in t]
    assert fake_openai.request_count == 2
    await core.handle(message("question three", author="alice"), sink)
    await settle(core)
    assert "faster than I can answer" in sink.texts[-1]  # the limit itself still holds


async def test_redelivery_after_a_crash_answers_what_was_cut_off(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    """A crash left one message unanswered and one answer stored but not fully shown."""
    from bot.types import Turn

    store = MemoryStore()
    await store.open()
    lost, cut = message("never answered", message_id="lost"), message("half", message_id="cut")
    conv = lost.key.as_str()
    await store.add_user_turn(conv, Turn("user", "never answered", 3, message_id="lost"))
    cut_id = await store.add_user_turn(conv, Turn("user", "half", 1, message_id="cut"))
    assert cut_id is not None
    stored = Turn("assistant", "the stored answer", 3, reply_to=cut_id, delivered=False)
    await store.add_assistant_turn(conv, stored)

    core = await core_factory(store)  # the restarted bot, on the same store
    fake_openai.script(reply("a fresh answer"))
    sink = RecordingSink()
    for msg in (lost, cut, lost, cut):  # the platform redelivers, twice
        await core.handle(msg, sink)
        await settle(core)
    assert sink.texts == ["a fresh answer", "the stored answer"]
    assert fake_openai.request_count == 1  # the stored answer is not asked for again
    history = await store.recent_turns(conv, 10**9, 10)
    assert [t.content for t in history] == [
        "never answered",
        "a fresh answer",
        "half",
        "the stored answer",
    ]


@pytest.mark.parametrize("kind", get_args(LLMErrorKind))
async def test_each_model_failure_gets_its_own_reply_and_stores_no_answer(
    model_core: Core, fake_model: FakeModel, kind: LLMErrorKind
) -> None:
    fake_model.script(fails(kind))
    sink = RecordingSink()
    msg = message("hello?")
    await model_core.handle(msg, sink)
    await settle(model_core)
    assert sink.texts == [EN.get(f"error_{kind}")]
    turns = await model_core.store.recent_turns(msg.key.as_str(), 10**9, 10)
    assert [t.role for t in turns] == ["user"]
