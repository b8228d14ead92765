"""Floods are absorbed: limits that notify once, bounded queues, a global model cap.

The core runs on the real openai SDK against the fake server; ``fake_openai.gate``
holds every answer before its first text, which is how a "blocked model" is made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.config import config_from_dict
from bot.core import Core
from bot.errors import ConfigError
from bot.floodgate import NoticeWindow, Refusal, WaitingCaps
from bot.modelcap import CappedModel
from bot.ratelimit import NOTICE_WINDOW_S, UserLimiter
from bot.texts import Texts
from fakes.fake_openai import FakeOpenAI, echo_last_user, reply
from tests.support import CoreFactory, RecordingSink, message, settle

EN = Texts("en")
WAIT_S = 8.0
POLL_S = 0.005
BUSY = EN.get("busy")
TOO_MANY = EN.get("too_many_waiting", count=3)
LIMITED_WORDS = "faster than I can answer"
# A held answer must not time out while a test looks at the queue.
HOLD = {"first_token_timeout_s": 30.0, "request_timeout_s": 60.0}


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)


async def stored_questions(core: Core, channel: str = "c1") -> list[str]:
    conv = message("x", channel=channel).key.as_str()
    turns = await core.store.recent_turns(conv, 10**9, 1000)
    return [t.content for t in turns if t.role == "user"]


def echo_text(body: dict[str, Any]) -> str:
    """The last user message without the "Name: " a group conversation puts first."""
    return echo_last_user(body).split(": ", 1)[-1]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- the per-person limit: one notice per window ---------------------------------------


def test_a_limited_person_is_told_once_per_window() -> None:
    clock = Clock()
    limiter = UserLimiter(2, clock)  # 2 at once, then one every 30 s
    assert [limiter.admit("u").allowed for _ in range(2)] == [True, True]
    first = limiter.admit("u")
    assert not first.allowed and first.notify and first.wait_s == 30.0
    later = [limiter.admit("u") for _ in range(3000)]
    assert not any(d.allowed or d.notify for d in later)  # 3,000 more: not a word
    clock.now = 30.0
    assert limiter.admit("u").allowed  # refilled by one
    assert not limiter.admit("u").notify  # still the same window: silence
    assert limiter.admit("other").allowed  # everyone has their own allowance
    clock.now = NOTICE_WINDOW_S
    again = [limiter.admit("u") for _ in range(5)]
    assert [d.notify for d in again if not d.allowed] == [True, False, False, False]


async def test_commands_and_empty_messages_count_towards_the_limit(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(user_messages_per_minute=2)
    sink = RecordingSink()
    await core.handle(message("!help", author="ann"), sink)
    await core.handle(message("   ", author="ann"), sink)
    for i in range(50):
        await core.handle(message(f"question {i}", author="ann"), sink)
        await core.handle(message("!help", author="ann"), sink)
    await settle(core)
    assert fake_openai.request_count == 0  # the command and the empty one used it up
    assert sink.texts[-1].startswith(EN.get("user_rate_limited", seconds=30)[:40])
    assert [t for t in sink.texts if LIMITED_WORDS in t] == [sink.texts[-1]]
    assert EN.get("empty_message") in sink.texts
    assert len(sink.texts) == 3  # help, "empty", one notice for the 100 refused
    assert await stored_questions(core) == []  # refused messages are not stored


async def test_a_flood_of_one_person_costs_one_notice_and_no_queue(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(user_messages_per_minute=20, **HOLD)
    fake_openai.gate.clear()
    sink = RecordingSink()
    for i in range(3000):
        await core.handle(message(f"spam {i}", author="flood"), sink)
    await until(lambda: len(sink.texts) == 1, "the notice")
    # The notice went out while the flooder's first answer was still held.
    assert LIMITED_WORDS in sink.texts[0] and fake_openai.completed == 0
    fake_openai.gate.set()
    await settle(core)
    assert len([t for t in sink.texts if LIMITED_WORDS in t]) == 1
    assert fake_openai.request_count == 20  # the allowance, not 3,000


# -- waiting caps: per conversation and per person ---------------------------------------


async def test_a_full_conversation_skips_new_messages_and_tells_each_sender_once(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(max_waiting_per_conversation=20, max_waiting_per_person=3, **HOLD)
    fake_openai.script(*(reply(echo_text) for _ in range(30)))
    fake_openai.gate.clear()  # the model is blocked: nothing gets answered yet
    sink = RecordingSink()
    for i in range(25):
        await core.handle(message(f"q{i}", author=f"p{i}"), sink)
    await core.handle(message("again", author="p22"), sink)  # told already: silence
    await until(lambda: len(sink.texts) == 5, "five busy notices")
    assert sink.texts == [BUSY] * 5  # sent at once, ahead of every held answer
    assert await stored_questions(core) == [f"q{i}" for i in range(20)]
    await fake_openai.wait_for(lambda f: f.streaming == 1)  # one at a time per conversation
    fake_openai.gate.set()
    await settle(core)
    answers = [t for t in sink.texts if t != BUSY]
    assert answers == [f"q{i}" for i in range(20)]  # every accepted message answered
    assert sink.texts.count(BUSY) == 5
    # With the queue empty again, a skipped person is let in (and answered).
    await core.handle(message("q22 again", author="p22"), sink)
    await settle(core)
    assert sink.texts[-1] == "q22 again"


async def test_one_person_holds_at_most_three_places_in_a_conversation(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(max_waiting_per_conversation=20, max_waiting_per_person=3, **HOLD)
    fake_openai.script(*(reply(echo_text) for _ in range(10)))
    fake_openai.gate.clear()
    sink = RecordingSink()
    for i in range(8):
        await core.handle(message(f"greedy {i}", author="greedy"), sink)
    await core.handle(message("!help", author="greedy"), sink)  # a command waits too
    await core.handle(message("my question", author="patient"), sink)
    await until(lambda: len(sink.texts) == 1, "the notice")
    assert sink.texts == [TOO_MANY]
    assert await stored_questions(core) == ["greedy 0", "greedy 1", "greedy 2", "my question"]
    fake_openai.gate.set()
    await settle(core)
    assert sink.texts[1:] == ["greedy 0", "greedy 1", "greedy 2", "my question"]
    # Their answers came: the next messages are let in; a new flood within the
    # minute is refused without a second notice (one notice a minute, README).
    fake_openai.gate.clear()
    for i in range(5):
        await core.handle(message(f"more {i}", author="greedy"), sink)
    fake_openai.gate.set()
    await settle(core)
    assert sink.texts.count(TOO_MANY) == 1
    assert sink.texts[-3:] == ["more 0", "more 1", "more 2"]


async def test_a_redelivered_message_does_not_take_a_second_place(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(max_waiting_per_person=1, **HOLD)
    fake_openai.gate.clear()
    sink = RecordingSink()
    first = message("only one", author="ann")
    await core.handle(first, sink)
    await core.handle(first, sink)  # a retry while it waits: not a second message
    fake_openai.gate.set()
    await settle(core)
    assert sink.texts == [reply_text()]
    await core.handle(first, sink)  # after its answer: a duplicate, dropped quietly
    await core.handle(message("next", author="ann"), sink)
    await settle(core)
    assert len(sink.texts) == 2 and TOO_MANY not in sink.texts


def reply_text() -> str:
    from fakes.fake_openai import DEFAULT_TEXT

    return DEFAULT_TEXT


def _full_caps() -> WaitingCaps:
    """Caps of 2 per conversation and 1 per person, with "a" and "b" waiting in "c"."""
    caps = WaitingCaps(per_conversation=2, per_person=1)
    assert caps.admit("c", "a") is None
    assert caps.admit("c", "b") is None
    return caps


def test_a_full_conversation_refuses_and_tells_the_sender_once() -> None:
    caps = _full_caps()
    refused = caps.admit("c", "x")
    assert refused is not None and refused.reason is Refusal.CONVERSATION_FULL
    assert refused.notify
    again = caps.admit("c", "x")
    assert again is not None and not again.notify


def test_a_person_over_their_share_is_refused_as_such() -> None:
    caps = _full_caps()
    over = caps.admit("c", "a")
    assert over is not None and over.reason is Refusal.PERSON_FULL and over.notify


def test_waiting_caps_forget_idle_conversations() -> None:
    caps = _full_caps()
    caps.release("c", "a")
    caps.release("c", "b")
    assert len(caps) == 0  # nothing kept for a conversation with nothing waiting
    assert caps.admit("c", "x") is None


# -- the global cap on model requests ------------------------------------------------------


async def test_the_model_cap_holds_across_conversations_and_all_get_answered(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(max_concurrent_requests=3, **HOLD)
    assert isinstance(core.model, CappedModel)
    capped = core.model
    fake_openai.gate.clear()
    sinks = [RecordingSink(pace_key=f"c{i}") for i in range(8)]
    for i, sink in enumerate(sinks):
        await core.handle(message(f"question {i}", channel=f"c{i}"), sink)
    await fake_openai.wait_for(lambda f: f.streaming == 3)
    await until(lambda: capped.waiting == 5, "five answers waiting for a slot")
    assert fake_openai.request_count == 3
    fake_openai.gate.set()
    await settle(core)
    assert all(len(s.texts) == 1 for s in sinks)  # every conversation answered
    assert fake_openai.max_streaming == 3
    assert capped.in_flight == 0 and capped.waiting == 0


async def test_model_slots_go_first_come_first_served(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(max_concurrent_requests=1, **HOLD)
    fake_openai.gate.clear()
    fake_openai.script(*(reply(echo_text) for _ in range(6)))
    order = [3, 0, 5, 1, 4, 2]
    for i in order:
        await core.handle(message(f"conv {i}", channel=f"c{i}"), RecordingSink())
    await fake_openai.wait_for(lambda f: f.streaming == 1)
    fake_openai.gate.set()
    await settle(core)
    asked = [echo_text(r) for r in fake_openai.chat_requests]
    assert asked == [f"conv {i}" for i in order]
    assert fake_openai.max_streaming == 1


async def test_one_busy_conversation_holds_one_model_slot(
    core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    core = await core_factory(max_concurrent_requests=2, **HOLD)
    fake_openai.gate.clear()
    busy, quiet = RecordingSink(pace_key="busy"), RecordingSink(pace_key="quiet")
    for i in range(5):
        await core.handle(message(f"busy {i}", channel="busy", author=f"p{i}"), busy)
    await core.handle(message("quiet one", channel="quiet"), quiet)
    await fake_openai.wait_for(lambda f: f.streaming == 2)
    asked = sorted(echo_text(r) for r in fake_openai.chat_requests)
    assert asked == ["busy 0", "quiet one"]
    fake_openai.gate.set()
    await settle(core)
    assert len(busy.texts) == 5 and len(quiet.texts) == 1


# -- configuration ----------------------------------------------------------------------------

KEY_ENV = {"OPENAI_API_KEY": "sk-test-key"}


def nested(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: nested(rest, value) if rest else value}


def test_the_flood_settings_have_defaults() -> None:
    cfg = config_from_dict(None, KEY_ENV)
    assert cfg.openai.max_concurrent_requests == 32
    assert cfg.limits.max_waiting_per_conversation == 20
    assert cfg.limits.max_waiting_per_person == 3


@pytest.mark.parametrize(
    "path",
    [
        "openai.max_concurrent_requests",
        "limits.max_waiting_per_conversation",
        "limits.max_waiting_per_person",
    ],
)
@pytest.mark.parametrize("value", [0, -1, "many", 1.5])
def test_bad_flood_settings_name_their_key(path: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(nested(path, value), KEY_ENV)
    assert info.value.path == path


def test_the_notice_window_tells_a_person_once_a_minute_and_remembers_a_bounded_few() -> None:
    now = [0.0]
    window = NoticeWindow(window_s=60.0, max_people=3, clock=lambda: now[0])
    assert window.allow("alice") and not window.allow("alice")
    now[0] = 59.0
    assert not window.allow("alice")
    now[0] = 60.0
    assert window.allow("alice")
    assert all(window.allow(f"swarm {i}") for i in range(100))  # each told once
    assert len(window) <= 3  # the oldest forgotten first
