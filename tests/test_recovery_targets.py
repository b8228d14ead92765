"""The reply targets adapters store with each question (restart recovery)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.discord import target as discord_target
from adapters.discord.translate import moved_to_thread
from adapters.slack import target as slack_target
from tests.support import message

GARBAGE = [
    "",
    "not json",
    "[]",
    "null",
    '{"c": "700"}',
    '{"c": true}',
    '{"c": 0}',
    '{"c": 1, "r": "2"}',
    '{"c": 18446744073709551616}',
    '{"t": "T1", "c": "", "th": null, "u": "U1"}',
    '{"t": "T1", "c": "C1", "th": 5, "u": "U1"}',
    '{"t": "T1", "c": "C1", "th": null}',
]


def test_discord_targets_round_trip() -> None:
    for where in (
        discord_target.Target(700000000000000010, 1579302845994237960, 700000000000000001),
        discord_target.Target(700000000000000040, 1579302845994237961, None),  # a DM
        discord_target.Target(700000000000000020, None, 700000000000000001),  # a new thread
    ):
        assert discord_target.decode(discord_target.encode(where)) == where


def test_slack_targets_round_trip() -> None:
    for where in (
        slack_target.Target("T1", "C1", "1700000000.000100", "U1"),
        slack_target.Target("T1", "D1", None, "U1"),  # a DM outside threads
    ):
        assert slack_target.decode(slack_target.encode(where)) == where


@pytest.mark.parametrize("text", GARBAGE)
def test_unreadable_targets_are_refused(text: str) -> None:
    assert discord_target.decode(text) is None
    assert slack_target.decode(text) is None


def test_a_question_moved_to_a_new_thread_is_answered_there_without_a_reply() -> None:
    asked = discord_target.Target(700000000000000010, 1579302845994237960, 700000000000000001)
    msg = replace(message("hi"), reply_target=discord_target.encode(asked))
    moved = moved_to_thread(msg, 1579302845994237960)
    assert discord_target.decode(moved.reply_target or "") == discord_target.Target(
        1579302845994237960, None, 700000000000000001
    )
