"""Slack payload → IncomingMessage, on payloads shaped like the Events API's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.translate import (
    BotIdentity,
    Policy,
    accept,
    names_needed,
    render_text,
    to_inbound,
    to_incoming,
)
from bot.types import Attachment, ConversationKey

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
BOT = BotIdentity(user_id="U0BOT", bot_id="B0BOT", name="chatbridge")
NAMES = {"U0ALICE": "alice", "U0BOB": "Bobby", "U0CAROL": "Carol D"}
THREAD = Policy()


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def test_mention_in_channel_is_answered_in_its_own_thread() -> None:
    inbound = to_inbound(load("app_mention_channel"), BOT, THREAD, NAMES)
    assert inbound is not None
    msg = inbound.message
    assert msg.key == ConversationKey("slack", "T0FAKE", "C0GENERAL", thread="1700000100.000100")
    assert msg.message_id == "1700000100.000100"  # exactly the ts: the dedupe key
    assert msg.text == "what is the capital of France?"
    assert msg.addressed and not msg.in_thread and not msg.is_dm
    assert msg.author_id == "U0ALICE" and msg.author_name == "alice"
    assert msg.sent_at == pytest.approx(1700000100.0001)
    assert (inbound.channel, inbound.reply_thread_ts) == ("C0GENERAL", "1700000100.000100")


def test_mention_inside_a_thread_joins_that_thread() -> None:
    inbound = to_inbound(load("app_mention_in_thread"), BOT, THREAD, NAMES)
    assert inbound is not None
    assert inbound.message.key.thread == "1700000100.000100"
    assert inbound.reply_thread_ts == "1700000100.000100"
    assert inbound.message.text == "and Germany?"  # "<@BOT>:" stripped with its colon
    assert inbound.message.addressed and inbound.message.in_thread


def test_message_twin_of_a_mention_is_left_to_app_mention() -> None:
    assert to_inbound(load("message_channels_mention_twin"), BOT, THREAD, NAMES) is None


def test_thread_reply_without_mention_is_a_follow_up() -> None:
    inbound = to_inbound(load("message_channels_thread_reply"), BOT, THREAD, {})
    assert inbound is not None
    msg = inbound.message
    assert msg.key == ConversationKey("slack", "T0FAKE", "C0GENERAL", thread="1700000100.000100")
    assert msg.in_thread and not msg.addressed  # the core answers if it is in the thread
    assert msg.author_name == "Bobby"  # from user_profile, no lookup needed
    assert inbound.reply_thread_ts == "1700000100.000100"


def test_private_channel_thread_reply_is_a_follow_up() -> None:
    inbound = to_inbound(load("message_groups_thread_reply"), BOT, THREAD, NAMES)
    assert inbound is not None
    assert inbound.message.key.channel == "G0SECRET" and inbound.message.in_thread


def test_top_level_channel_chatter_is_ignored() -> None:
    assert to_inbound(load("message_channels_top_level"), BOT, THREAD, NAMES) is None


def test_dm_is_answered_without_mention_at_top_level() -> None:
    inbound = to_inbound(load("message_im"), BOT, THREAD, NAMES)
    assert inbound is not None
    msg = inbound.message
    assert msg.key == ConversationKey("slack", "T0FAKE", "D0ALICE", thread=None, user="U0ALICE")
    assert msg.addressed and msg.is_dm and not msg.in_thread
    assert inbound.reply_thread_ts is None


def test_dm_thread_is_its_own_conversation() -> None:
    inbound = to_inbound(load("message_im_thread"), BOT, THREAD, NAMES)
    assert inbound is not None
    key = inbound.message.key
    assert key == ConversationKey("slack", "T0FAKE", "D0ALICE", "1700000400.000500", "U0ALICE")
    assert inbound.reply_thread_ts == "1700000400.000500"


@pytest.mark.parametrize(
    "fixture",
    [
        "message_changed",
        "message_deleted",
        "channel_join",
        "own_bot_reply",
        "other_bot_message",
        "other_bot_in_dm",
    ],
)
def test_events_that_are_not_new_user_messages_are_ignored(fixture: str) -> None:
    assert to_inbound(load(fixture), BOT, THREAD, NAMES) is None
    assert accept(load(fixture), BOT, THREAD) is None


def test_a_file_without_text_is_a_message_with_an_attachment() -> None:
    inbound = to_inbound(load("file_share_no_text"), BOT, THREAD, NAMES)
    assert inbound is not None
    assert inbound.message.text == ""
    assert inbound.message.attachments == (
        Attachment("cat.png", "", 0, "image/png", file_id="F0IMG"),  # URL via files.info
    )


def test_own_messages_stay_ignored_even_when_bots_are_allowed() -> None:
    policy = Policy(allow_bots=True)
    assert to_inbound(load("own_bot_reply"), BOT, policy, NAMES) is None


def test_other_bots_are_answered_when_allowed() -> None:
    policy = Policy(allow_bots=True)
    legacy = to_inbound(load("other_bot_message"), BOT, policy, NAMES)
    assert legacy is not None
    assert legacy.message.author_id == "B0OTHER"
    assert legacy.message.author_name == "Deploy Bot"
    assert legacy.message.in_thread
    app_bot = to_inbound(load("other_bot_in_dm"), BOT, policy, NAMES)
    assert app_bot is not None and app_bot.message.is_dm


@pytest.mark.parametrize("fixture", ["thread_broadcast", "file_share_with_text"])
def test_broadcast_and_file_share_with_text_count_as_messages(fixture: str) -> None:
    assert to_inbound(load(fixture), BOT, THREAD, NAMES) is not None


def test_markup_becomes_readable_text() -> None:
    msg = to_incoming(load("app_mention_markup"), BOT, THREAD, NAMES)
    assert msg is not None
    assert msg.text == (
        "ask @Bobby and @Carol D in #random about the spec (https://example.com/a?b=1&c=2)"
        " and https://example.org <soon> @here dev@example.com thanks @chatbridge!"
    )


def test_names_needed_lists_mentioned_people_but_not_the_bot() -> None:
    event = accept(load("app_mention_markup"), BOT, THREAD)
    assert event is not None
    assert names_needed(event, BOT) == {"U0ALICE", "U0BOB", "U0CAROL"}
    reply = accept(load("message_channels_thread_reply"), BOT, THREAD)
    assert reply is not None
    assert names_needed(reply, BOT) == set()  # the author's profile came with the event


def test_unknown_names_fall_back_to_labels_and_ids() -> None:
    msg = to_incoming(load("app_mention_markup"), BOT, THREAD, {})
    assert msg is not None
    assert msg.text.startswith("ask @U0BOB and @carol in #random")
    assert msg.author_name == "U0ALICE"


def test_bare_mention_leaves_empty_text_for_the_core_to_explain() -> None:
    msg = to_incoming(load("app_mention_only"), BOT, THREAD, NAMES)
    assert msg is not None and msg.text == "" and msg.addressed


def test_channel_scope_shares_history_but_still_replies_in_thread() -> None:
    policy = Policy(scope="channel")
    inbound = to_inbound(load("app_mention_in_thread"), BOT, policy, NAMES)
    assert inbound is not None
    assert inbound.message.key == ConversationKey("slack", "T0FAKE", "C0GENERAL", thread=None)
    assert inbound.reply_thread_ts == "1700000100.000100"
    # In channel scope a thread follow-up needs a mention.
    assert to_inbound(load("message_channels_thread_reply"), BOT, policy, NAMES) is None
    # DMs keep their per-person key.
    dm = to_inbound(load("message_im"), BOT, policy, NAMES)
    assert dm is not None and dm.message.key.user == "U0ALICE"


def test_allowlists() -> None:
    body = load("app_mention_channel")
    assert to_inbound(body, BOT, Policy(allowed_teams=frozenset({"T0OTHER"})), NAMES) is None
    assert to_inbound(body, BOT, Policy(allowed_channels=frozenset({"C0RANDOM"})), NAMES) is None
    assert to_inbound(body, BOT, Policy(allowed_users=frozenset({"U0BOB"})), NAMES) is None
    allowed = Policy(
        allowed_teams=frozenset({"T0FAKE"}),
        allowed_channels=frozenset({"C0GENERAL"}),
        allowed_users=frozenset({"U0ALICE"}),
    )
    assert to_inbound(body, BOT, allowed, NAMES) is not None


def test_channel_allowlist_does_not_block_dms() -> None:
    policy = Policy(allowed_channels=frozenset({"C0GENERAL"}))
    assert to_inbound(load("message_im"), BOT, policy, NAMES) is not None


def test_admin_users_mark_the_author_admin() -> None:
    body = load("app_mention_channel")
    admin = to_incoming(body, BOT, Policy(admin_users=frozenset({"U0ALICE"})), NAMES)
    plain = to_incoming(body, BOT, THREAD, NAMES)
    assert admin is not None and admin.author_is_admin
    assert plain is not None and not plain.author_is_admin


def test_events_without_channel_or_ts_or_of_other_types_are_ignored() -> None:
    body = load("app_mention_channel")
    for broken in ({"channel": None}, {"ts": None}, {"type": "reaction_added"}):
        event = {**body["event"], **broken}
        assert to_inbound({**body, "event": event}, BOT, THREAD, NAMES) is None
    assert to_inbound({"type": "url_verification"}, BOT, THREAD, NAMES) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<@U0BOT> hi", "hi"),
        ("<@U0BOT|chatbridge>, hi", "hi"),
        ("<@U0BOT> <@U0BOT> hi", "hi"),
        ("hi <@U0BOT>", "hi @chatbridge"),
        ("a &amp;&lt;b&gt; c", "a &<b> c"),
        ("<!channel> <!everyone> <!subteam^S0X|@devs>", "@channel @everyone @devs"),
        ("<!date^1700000000^{date}|Nov 14>", "Nov 14"),
        ("<#C0X>", "#C0X"),
        ("<https://a.example|a.example>", "https://a.example"),
        ("<mailto:x@y.z|write me>", "write me (x@y.z)"),
        ("line one\n\nline   two", "line one\n\nline two"),
    ],
)
def test_render_text(raw: str, expected: str) -> None:
    assert render_text(raw, BOT, NAMES) == expected
