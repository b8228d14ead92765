"""Broken, truncated and random Discord payloads through the translator.

A payload goes through discord.py first, as on the gateway: its parsers (and the
lazy properties the translator reads) may reject a malformed payload, which is
discord.py's business. Only a payload that discord.py turned into objects reaches
our translator, and from there nothing may escape: the result is None or a
well-formed message.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
from discord.state import ConnectionState
from hypothesis import event, example, given
from hypothesis import strategies as st

from adapters.discord.setup import gateway_intents
from adapters.discord.translate import (
    THREAD_NAME_MAX,
    Policy,
    command_incoming,
    moved_to_thread,
    readable_text,
    thread_name,
    to_incoming,
)
from bot.types import IncomingMessage
from tests.support import FUZZ, json_values, mutated, nasty_text

FIXTURES = Path(__file__).parent / "fixtures" / "discord"
PAYLOADS = {
    p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(FIXTURES.glob("*.json"))
}
MESSAGES = sorted(name for name in PAYLOADS if name.startswith("message_"))
INTERACTIONS = sorted(name for name in PAYLOADS if name.startswith("interaction_"))
BOT = 1100000000000000001
BOT_ROLE = "1200000000000000032"
IDS = (
    "1200000000000000001",  # the guild
    "1200000000000000010",  # general
    "1200000000000000020",  # a thread in general
    "1200000000000000030",  # Moderator
    "1200000000000000031",  # Helpers
    "1300000000000000001",  # Alice
    "1400000000000000001",  # Alice's DM channel
)

policies = st.builds(
    Policy,
    allow_bots=st.booleans(),
    allowed_guilds=st.frozensets(st.sampled_from(IDS), max_size=2),
    allowed_channels=st.frozensets(st.sampled_from(IDS), max_size=2),
    allowed_roles=st.frozensets(st.sampled_from(IDS), max_size=2),
    admin_roles=st.frozensets(st.sampled_from(IDS), max_size=2),
)
bot_ids = st.sampled_from((BOT, 1300000000000000001, 1)) | st.integers(min_value=0, max_value=2**64)
mention_ids = st.one_of(
    st.sampled_from((str(BOT), *IDS, BOT_ROLE, "1999999999999999999", "0", "٣")),
    # Lengths around a snowflake's 20 digits and int()'s 4,300-digit limit.
    st.sampled_from((1, 20, 21, 4_300, 4_301)).map(lambda digits: "9" * digits),
)
# Content that is mostly markup: mentions of the bot, people, roles, channels, emoji.
mention_text = st.lists(
    st.one_of(
        st.builds("<@{}{}>".format, st.sampled_from(("", "!")), mention_ids),
        st.builds("<@&{}>".format, mention_ids),
        st.builds("<#{}>".format, mention_ids),
        st.builds(
            "<{}:{}:{}>".format, st.sampled_from(("", "a")), st.text(max_size=5), mention_ids
        ),
        st.builds("</{}:{}>".format, st.text(max_size=5), mention_ids),
        st.sampled_from((" ", ",", ", ", "!", "\t", "\n", "?")),
        nasty_text,
    ),
    max_size=12,
).map("".join)


class World:
    """discord.py's cache filled from a (possibly broken) READY and GUILD_CREATE.

    Raises whatever discord.py raises when it cannot take the payloads. Payloads
    are copied first: discord.py edits them in place (it moves ``author`` into
    ``member``), which would change the shared fixtures under Hypothesis.
    """

    def __init__(self, guild: Any = None) -> None:
        self.client = discord.Client(intents=gateway_intents(True))
        self.state: ConnectionState[discord.Client] = self.client._connection
        self.captured: list[Any] = []
        self.state.dispatch = self._capture
        ready = PAYLOADS["ready"]
        self.state.user = discord.ClientUser(state=self.state, data=copy.deepcopy(ready["user"]))
        self.state.application_id = int(ready["application"]["id"])
        guild = PAYLOADS["guild_create"] if guild is None else guild
        self.state._add_guild_from_data(copy.deepcopy(guild))

    def _capture(self, event: str, *args: Any) -> None:
        self.captured.append((event, args))

    def message(self, data: Any) -> discord.Message:
        self.state.parse_message_create(copy.deepcopy(data))
        name, args = self.captured.pop()
        assert name == "message"
        return args[0]  # type: ignore[no-any-return]

    def interaction(self, data: Any) -> discord.Interaction:
        return discord.Interaction(data=copy.deepcopy(data), state=self.state)


# -- what discord.py gives us -------------------------------------------------------------------


def _touch_user(user: object) -> None:
    """The author attributes the translator reads, as discord.py computes them."""
    _expect(user, discord.abc.User)  # a payload without one leaves discord.utils.MISSING
    assert isinstance(user, discord.abc.User)
    _expect(user.id, int)
    _expect(user.bot, bool)
    _expect(user.display_name, str)
    if isinstance(user, discord.Member):
        _ = [role.id for role in user.roles]
        _ = user.guild_permissions


def _touch_channel(channel: object) -> None:
    _ = getattr(channel, "id", None), getattr(channel, "guild_id", None)
    if isinstance(channel, discord.Thread):
        _ = channel.parent_id


def library_view(message: discord.Message) -> None:
    """Read every discord.py attribute the translator relies on.

    discord.py computes some of them lazily: a payload it parsed may still fail
    here (say an id whose timestamp is out of range). That failure is discord.py
    rejecting the payload, not our translator. Values must also have the types
    discord.py declares, since our code may rely on those.
    """
    _touch_user(message.author)
    _expect(message.id, int)
    _expect(message.content, str)
    _expect(message.type, discord.MessageType)
    _ = message.webhook_id, message.guild
    _touch_channel(message.channel)
    _ = message.raw_mentions
    _ = [role.tags for role in message.role_mentions]
    for user in message.mentions:
        _touch_user(user)
    resolved = message.reference.resolved if message.reference is not None else None
    if isinstance(resolved, discord.Message):
        _touch_user(resolved.author)
    _ = message.created_at.timestamp()


def interaction_view(interaction: discord.Interaction) -> None:
    """Like :func:`library_view`, for what :func:`command_incoming` reads."""
    _touch_user(interaction.user)
    _touch_channel(interaction.channel)
    _expect(interaction.id, int)
    _ = interaction.guild_id, interaction.permissions, interaction.created_at.timestamp()


def _expect(value: object, kind: type) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"discord.py handed over {value!r}, not a {kind.__name__}")


@dataclass(frozen=True, slots=True)
class Rejected:
    """discord.py refused the payload (while parsing or in a property)."""

    error: Exception


def parsed_message(guild: Any, data: Any) -> discord.Message | Rejected:
    try:
        message = World(guild).message(data)
        library_view(message)
    except Exception as exc:  # discord.py's own parsers reject malformed payloads
        return Rejected(exc)
    return message


def parsed_interaction(guild: Any, data: Any) -> discord.Interaction | Rejected:
    try:
        interaction = World(guild).interaction(data)
        interaction_view(interaction)
    except Exception as exc:
        return Rejected(exc)
    return interaction


# -- our translator ----------------------------------------------------------------------------


def _assert_well_formed(msg: IncomingMessage) -> None:
    for ident in (msg.message_id, msg.author_id, msg.key.workspace, msg.key.channel):
        assert isinstance(ident, str) and ident
    assert msg.key.platform == "discord"
    assert isinstance(msg.text, str) and msg.text == msg.text.strip()
    assert isinstance(msg.author_name, str)
    assert isinstance(msg.sent_at, float)
    assert msg.is_dm == (msg.key.workspace == "@dm")
    name = thread_name(msg)
    assert isinstance(name, str) and len(name) <= THREAD_NAME_MAX
    moved = moved_to_thread(msg, 77)
    assert moved.key.thread == "77" and moved.in_thread


def _translate_message(message: discord.Message | Rejected, policy: Policy, bot_id: int) -> None:
    if isinstance(message, Rejected):
        event(f"discord.py rejected: {type(message.error).__name__}")
        return
    event("reached the translator")
    text = readable_text(message, bot_id)
    assert isinstance(text, str) and text == text.strip()
    msg = to_incoming(message, bot_id, policy)
    if msg is not None:
        _assert_well_formed(msg)


message_payloads = st.sampled_from(MESSAGES).flatmap(lambda name: mutated(PAYLOADS[name]))


@FUZZ
@given(data=message_payloads, policy=policies, bot_id=bot_ids)
# An unknown message type that is a list: discord.py keeps it in an unhashable
# proxy, and the translator's set lookup of the type raised TypeError.
@example(data={**PAYLOADS["message_plain"], "type": []}, policy=Policy(), bot_id=BOT)
def test_mutated_messages_never_break_the_translator(
    data: Any, policy: Policy, bot_id: int
) -> None:
    message = parsed_message(None, data)
    # The harness itself must work: an untouched recording always reaches the translator.
    assert data not in PAYLOADS.values() or not isinstance(message, Rejected)
    _translate_message(message, policy, bot_id)


@FUZZ
@given(
    guild=mutated(PAYLOADS["guild_create"], max_mutations=6),
    name=st.sampled_from(MESSAGES),
    policy=policies,
)
def test_a_broken_guild_cache_never_breaks_the_translator(
    guild: Any, name: str, policy: Policy
) -> None:
    message = parsed_message(guild, PAYLOADS[name])
    assert guild != PAYLOADS["guild_create"] or not isinstance(message, Rejected)
    _translate_message(message, policy, BOT)


@FUZZ
@given(
    name=st.sampled_from(MESSAGES),
    content=mention_text,
    policy=policies,
    bot_id=st.sampled_from((BOT, 1300000000000000002)),
)
# A mention id past int()'s 4,300-digit limit raised ValueError while rendering.
@example(name="message_plain", content="<@&" + "9" * 4_301 + ">", policy=Policy(), bot_id=BOT)
def test_hostile_content_is_rendered(name: str, content: str, policy: Policy, bot_id: int) -> None:
    message = parsed_message(None, {**PAYLOADS[name], "content": content})
    assert not isinstance(message, Rejected)  # any text is fine for discord.py
    _translate_message(message, policy, bot_id)


MESSAGE_KEYS = sorted({key for name in MESSAGES for key in PAYLOADS[name]})
random_dicts = st.dictionaries(st.text(max_size=12), json_values, max_size=8)
# Known top-level fields with random values, laid over a recorded message.
overlaid = st.builds(
    lambda name, fields: {**PAYLOADS[name], **fields},
    st.sampled_from(MESSAGES),
    st.dictionaries(st.sampled_from(MESSAGE_KEYS), json_values, min_size=1, max_size=2),
)


@FUZZ
@given(data=random_dicts | overlaid, policy=policies)
def test_random_dicts_never_break_the_translator(data: Any, policy: Policy) -> None:
    _translate_message(parsed_message(None, data), policy, BOT)


@FUZZ
@given(
    data=st.sampled_from(INTERACTIONS).flatmap(lambda name: mutated(PAYLOADS[name])),
    policy=policies,
    name=nasty_text,
    arg=nasty_text,
)
def test_mutated_interactions_never_break_the_translator(
    data: Any, policy: Policy, name: str, arg: str
) -> None:
    interaction = parsed_interaction(None, data)
    assert data not in PAYLOADS.values() or not isinstance(interaction, Rejected)
    if isinstance(interaction, Rejected):
        event(f"discord.py rejected: {type(interaction.error).__name__}")
        return
    event("reached the translator")
    msg = command_incoming(interaction, policy, name, arg)
    if msg is not None:
        _assert_well_formed(msg)
        assert msg.addressed and msg.message_id.startswith("interaction:")
