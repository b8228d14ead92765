"""Who may reset or re-prompt a conversation, through the real core and openai SDK."""

from __future__ import annotations

from bot.texts import Texts
from tests.fakes.fake_openai import FakeOpenAI, echo_last_user
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
