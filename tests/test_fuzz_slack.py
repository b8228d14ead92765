"""Broken, truncated and random Slack event bodies through the translator.

Bolt hands the translator whatever JSON arrived, so nothing may escape it: each
body ends as None or as a well-formed message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from adapters.slack.translate import (
    BotIdentity,
    Inbound,
    Policy,
    accept,
    names_needed,
    render_text,
    to_inbound,
)
from tests.support import FUZZ, json_values, mutated, nasty_text, wrong_values

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
BODIES = {
    p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(FIXTURES.glob("*.json"))
}
BOT = BotIdentity(user_id="U0BOT", bot_id="B0BOT", name="chatbridge")

# Values that appear in the fixtures, so random events also pass the early checks.
PLAUSIBLE = {
    "type": ("message", "app_mention", "message", "app_mention", "reaction_added"),
    "subtype": ("bot_message", "thread_broadcast", "file_share", "message_changed"),
    "channel": ("C0GENERAL", "D0ALICE", "G0SECRET"),
    "channel_type": ("im", "channel", "group", "mpim"),
    "ts": ("1700000100.000100", "1700000200.000300", "nan", "1e999", "-0"),
    "thread_ts": ("1700000100.000100", "1700000200.000300"),
    "user": ("U0ALICE", "U0BOB", "U0BOT", "W0X"),
    "bot_id": ("B0BOT", "B0OTHER"),
    "team": ("T0FAKE", "T0OTHER"),
    "text": ("<@U0BOT> hi", "hi <@U0BOB|bob>", "<@U0BOT>", ""),
    "username": ("deploybot",),
    "user_profile": ({"display_name": "Bobby"}, {"real_name": 5}, {}),
    "bot_profile": ({"name": "Deploy Bot"}, {"name": None}),
}


REQUIRED = ("type", "channel", "ts", "user")


def _field(key: str) -> st.SearchStrategy[Any]:
    """Mostly a plausible value (so the deeper rules run), sometimes any value."""
    plausible = st.sampled_from(PLAUSIBLE[key])
    return st.integers(min_value=0, max_value=5).flatmap(
        lambda roll: wrong_values if roll == 0 else plausible
    )


random_events = st.fixed_dictionaries(
    {key: _field(key) for key in REQUIRED},
    optional={key: _field(key) for key in PLAUSIBLE if key not in REQUIRED},
)
random_bodies = st.one_of(
    st.dictionaries(st.text(max_size=10), json_values, max_size=6),
    st.dictionaries(st.sampled_from(("event", "team_id", "type")), json_values),
)
event_bodies = st.fixed_dictionaries(
    {"event": random_events}, optional={"team_id": _field("team"), "type": json_values}
)
fixture_bodies = st.sampled_from(sorted(BODIES)).flatmap(lambda name: mutated(BODIES[name]))
_ids = st.sampled_from(
    ("T0FAKE", "C0GENERAL", "D0ALICE", "U0ALICE", "U0BOB", "B0OTHER", "1700000100.000100")
)
policies = st.builds(
    Policy,
    scope=st.sampled_from(("thread", "channel")),
    allow_bots=st.booleans(),
    allowed_teams=st.frozensets(_ids, max_size=2),
    allowed_channels=st.frozensets(_ids, max_size=2),
    allowed_users=st.frozensets(_ids, max_size=2),
    admin_users=st.frozensets(_ids, max_size=2),
)
name_maps = st.dictionaries(st.sampled_from(("U0ALICE", "U0BOB", "W0X")) | st.text(), nasty_text)


def _assert_well_formed(inbound: Inbound) -> None:
    msg = inbound.message
    for ident in (msg.message_id, msg.author_id, msg.key.channel):
        assert isinstance(ident, str) and ident
    assert msg.key.platform == "slack"
    assert isinstance(msg.key.workspace, str)
    assert msg.key.thread is None or (isinstance(msg.key.thread, str) and msg.key.thread)
    assert msg.key.user is None or (isinstance(msg.key.user, str) and msg.key.user)
    assert isinstance(msg.text, str) and isinstance(msg.author_name, str)
    assert isinstance(msg.sent_at, float) and math.isfinite(msg.sent_at)  # storable
    assert inbound.channel == msg.key.channel and inbound.team_id == msg.key.workspace
    assert inbound.reply_thread_ts is None or isinstance(inbound.reply_thread_ts, str)


def _translate(body: dict[str, Any], policy: Policy, names: Mapping[str, str]) -> None:
    """What the adapter does with one body; every step must hold up."""
    event = accept(body, BOT, policy)
    if event is not None:
        needed = names_needed(event, BOT)
        assert all(isinstance(i, str) and i for i in needed)
    inbound = to_inbound(body, BOT, policy, names)
    assert (inbound is None) == (event is None)
    if inbound is not None:
        _assert_well_formed(inbound)


@FUZZ
@given(body=fixture_bodies, policy=policies, names=name_maps)
# A "nan" ts used to give sent_at=NaN, which the SQLite store refuses (NOT NULL).
@example(
    body={**BODIES["message_im"], "event": {**BODIES["message_im"]["event"], "ts": "nan"}},
    policy=Policy(),
    names={},
)
def test_mutated_fixtures_never_raise(
    body: dict[str, Any], policy: Policy, names: dict[str, str]
) -> None:
    _translate(body, policy, names)


@FUZZ
@given(body=random_bodies, policy=policies, names=name_maps)
def test_random_bodies_never_raise(
    body: dict[str, Any], policy: Policy, names: dict[str, str]
) -> None:
    _translate(body, policy, names)


@FUZZ
@given(body=event_bodies, policy=policies, names=name_maps)
# A list subtype used to raise TypeError (unhashable) in the subtype check.
@example(
    body={"event": {"type": "message", "channel": "C0GENERAL", "ts": "1.0", "subtype": []}},
    policy=Policy(),
    names={},
)
def test_random_events_never_raise(
    body: dict[str, Any], policy: Policy, names: dict[str, str]
) -> None:
    _translate(body, policy, names)


@FUZZ
@given(text=nasty_text, names=name_maps)
def test_render_text_never_raises(text: str, names: dict[str, str]) -> None:
    rendered = render_text(text, BOT, names)
    assert isinstance(rendered, str) and rendered == rendered.strip()


@FUZZ
@given(text=nasty_text)
def test_fixture_with_hostile_text_is_still_answered(text: str) -> None:
    body = json.loads(json.dumps(BODIES["app_mention_channel"]))
    body["event"]["text"] = text
    inbound = to_inbound(body, BOT, Policy(), {})
    assert inbound is not None  # a mention is answered whatever it says
    _assert_well_formed(inbound)
