"""Slack names under a flood of mentions: real slack_bolt + slack_sdk, fake Slack."""

from __future__ import annotations

import asyncio

from adapters.slack.names import MAX_LOOKUPS_PER_MESSAGE
from bot.core import Core
from bot.texts import Texts
from fakes.fake_openai import FakeOpenAI, echo_last_user, reply
from fakes.fake_slack import FakeSlack
from tests.support import SLACK_WAIT_S as WAIT_S
from tests.support import CoreFactory, deliver, fake_slack, settle, until, user_contents
from tests.support import running_slack as running

__all__ = ["fake_slack"]  # the fixture, used by name

MENTIONED = 3000


async def test_three_thousand_mentions_cost_a_capped_lookup_after_the_ack(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    people = [f"U1{i:07d}" for i in range(MENTIONED)]
    for i, person in enumerate(people[:MAX_LOOKUPS_PER_MESSAGE]):
        fake_slack.add_user(person, f"person{i}")
    everyone = " ".join(f"<@{p}>" for p in people)
    mention, twin = fake_slack.mention(f"hello {everyone}")
    root = mention["event"]["ts"]
    fake_openai.script(reply("Hello, all of you."), reply("You're welcome."))
    async with running(fake_slack, memory_core) as adapter:
        names = adapter.names
        assert names is not None
        envelope = await fake_slack.push(mention)
        await fake_slack.wait_ack(envelope)
        before_ack = fake_slack.calls[: fake_slack.calls_at_ack[envelope]]
        assert not [c for c in before_ack if c.method == "users.info"]
        await fake_slack.wait_ack(await fake_slack.push(twin))  # Slack sends it twice
        await until(lambda: adapter.events_handled == 2, "the listener")
        await names.settled()
        await asyncio.wait_for(memory_core.drain(), WAIT_S)
        looked_up = [c.args["user"] for c in fake_slack.calls_to("users.info")]
        # The author first, then the people first mentioned, up to the cap: both events
        # of the one message asked for the same names.
        assert len(looked_up) == MAX_LOOKUPS_PER_MESSAGE
        assert set(looked_up) == {"U0ALICE", *people[: MAX_LOOKUPS_PER_MESSAGE - 1]}
        # A later message in the thread sees the names the first one asked for.
        follow_up = fake_slack.event_body(
            fake_slack.message_event(f"thanks <@{people[0]}>", thread_ts=root)
        )
        await deliver(fake_slack, adapter, memory_core, follow_up)
    first, second = fake_openai.chat_requests
    # Names not known yet stay ids: the author and every person mentioned.
    assert user_contents(first).startswith(f"U0ALICE: hello @{people[0]} @{people[1]} ")
    assert "alice: thanks @person0" in user_contents(second)


async def test_a_flood_of_top_level_mentions_holds_three_places_in_the_channel(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    # Each top-level mention is a conversation (a thread) of its own; the answers of
    # one channel share its posting pace. The cap on a person's waiting messages
    # holds in the channel, so Bob waits behind three of Alice's, not twenty.
    core = await core_factory(
        user_messages_per_minute=20,
        max_waiting_per_person=3,
        first_token_timeout_s=30.0,
        request_timeout_s=60.0,
    )
    fake_openai.script(*(reply(echo_last_user) for _ in range(30)))
    fake_openai.gate.clear()
    flood = [fake_slack.mention(f"spam {i}")[0] for i in range(20)]
    bob, _ = fake_slack.mention("what time is it?", user="U0BOB")
    async with running(fake_slack, core) as adapter:
        for body in [*flood, bob]:
            await fake_slack.wait_ack(await fake_slack.push(body))
        await until(lambda: adapter.events_handled == len(flood) + 1, "the listener")
        too_many = Texts("en").get("too_many_waiting", count=3)
        await until(lambda: fake_slack.texts().count(too_many) == 1, "the notice")
        fake_openai.gate.set()
        await settle(core)
    asked = [user_contents(r) for r in fake_openai.chat_requests]
    assert len(asked) == 4 and asked[-1].endswith("what time is it?")
    assert fake_slack.texts().count(too_many) == 1  # one notice, not seventeen


async def test_a_redelivery_refused_by_a_full_channel_is_a_duplicate_not_a_notice(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory(
        max_waiting_per_person=3, first_token_timeout_s=30.0, request_timeout_s=60.0
    )
    fake_openai.script(*(reply(echo_last_user) for _ in range(10)))
    first, _ = fake_slack.mention("answered long ago")
    later = [fake_slack.mention(f"waiting {i}")[0] for i in range(3)]
    async with running(fake_slack, core) as adapter:
        await deliver(fake_slack, adapter, core, first)
        fake_openai.gate.clear()  # three more of hers wait in other threads
        for body in later:
            await fake_slack.wait_ack(await fake_slack.push(body))
        await fake_slack.wait_ack(await fake_slack.push(first, retry_attempt=1))
        await until(lambda: adapter.events_handled == 5, "the listener")
        fake_openai.gate.set()
        await settle(core)
    too_many = Texts("en").get("too_many_waiting", count=3)
    assert too_many not in fake_slack.texts()  # she was not told to send it again
    assert len(fake_openai.chat_requests) == 4  # and it was not answered twice
