"""The pure translation of Discord payloads (recorded JSON) into IncomingMessages.

Payloads go through discord.py's own parsers (a ConnectionState with no
connection), so the translator sees exactly the objects it sees in production.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import discord
import pytest
from discord.state import ConnectionState

from adapters.discord.setup import gateway_intents, invite_permissions, invite_url
from adapters.discord.translate import (
    Policy,
    command_incoming,
    moved_to_thread,
    readable_text,
    thread_name,
    to_incoming,
)
from bot.types import ConversationKey, IncomingMessage

FIXTURES = Path(__file__).parent / "fixtures" / "discord"
BOT = 1100000000000000001
GUILD = "1200000000000000001"
GENERAL = "1200000000000000010"
THREAD = "1200000000000000020"
MODERATOR_ROLE = "1200000000000000030"
HELPERS_ROLE = "1200000000000000031"
ALICE = "1300000000000000001"
BOB = "1300000000000000002"
DM_CHANNEL = "1400000000000000001"

OPEN = Policy()


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


class World:
    """discord.py's cache filled from the recorded READY and GUILD_CREATE."""

    def __init__(self) -> None:
        self.client = discord.Client(intents=gateway_intents(True))
        self.state: ConnectionState[discord.Client] = self.client._connection
        self.captured: list[Any] = []
        self.state.dispatch = self._capture
        ready = load("ready")
        self.state.user = discord.ClientUser(state=self.state, data=ready["user"])
        self.client._connection.application_id = int(ready["application"]["id"])
        self.state._add_guild_from_data(load("guild_create"))

    def _capture(self, event: str, *args: Any) -> None:
        self.captured.append((event, args))

    def message(self, name: str, **changes: Any) -> discord.Message:
        data: Any = {**load(name), **changes}  # a MESSAGE_CREATE payload
        self.state.parse_message_create(data)
        event, args = self.captured.pop()
        assert event == "message"
        return args[0]  # type: ignore[no-any-return]

    def interaction(self, name: str) -> discord.Interaction:
        return discord.Interaction(data=load(name), state=self.state)


@pytest.fixture
def world() -> World:
    return World()


def translate(world: World, name: str, policy: Policy = OPEN) -> IncomingMessage | None:
    return to_incoming(world.message(name), BOT, policy)


def test_mention_in_channel(world: World) -> None:
    msg = translate(world, "message_mention")
    assert msg is not None
    assert msg.key == ConversationKey("discord", GUILD, GENERAL)
    assert msg.addressed and not msg.in_thread and not msg.is_dm
    assert msg.author_id == ALICE
    assert msg.author_name == "Alice"
    assert msg.message_id == "1500000000000000001"
    # The bot's mention is gone; others read as names the model understands.
    assert msg.text == "hey @Bobby, see #random and ask @Helpers :party: then /help"
    assert not msg.author_is_admin


def test_bot_mention_in_the_middle_leaves_tidy_text(world: World) -> None:
    msg = translate(world, "message_mention_middle")
    assert msg is not None and msg.text == "thanks, what about Rome?"


def test_reply_to_the_bot_addresses_it(world: World) -> None:
    msg = translate(world, "message_reply_to_bot")
    assert msg is not None
    assert msg.addressed
    assert msg.text == "And of Italy?"
    assert msg.author_name == "Bobby"  # the server nickname


def test_plain_channel_message_is_not_addressed(world: World) -> None:
    msg = translate(world, "message_plain")
    assert msg is not None and not msg.addressed and not msg.in_thread


def test_dm_is_addressed_without_mention_and_keyed_per_user(world: World) -> None:
    msg = translate(world, "message_dm")
    assert msg is not None
    assert msg.key == ConversationKey("discord", "@dm", DM_CHANNEL, user=ALICE)
    assert msg.addressed and msg.is_dm
    assert msg.text == "can you help me with a regex?"


def test_thread_follow_up_is_its_own_conversation(world: World) -> None:
    msg = translate(world, "message_thread_followup")
    assert msg is not None
    assert msg.key == ConversationKey("discord", GUILD, GENERAL, thread=THREAD)
    assert msg.in_thread and not msg.addressed


def test_thread_message_without_content_is_dropped(world: World) -> None:
    # Without the Message Content intent Discord sends "" for unaddressed messages.
    assert translate(world, "message_thread_no_content") is None


def test_own_messages_are_ignored(world: World) -> None:
    assert translate(world, "message_own") is None


def test_other_bots_are_ignored_unless_allowed(world: World) -> None:
    assert translate(world, "message_other_bot") is None
    msg = translate(world, "message_other_bot", Policy(allow_bots=True))
    assert msg is not None and msg.addressed and msg.text == "ping from a bot"


def test_a_bot_replying_to_the_bot_is_not_a_request(world: World) -> None:
    # Otherwise two bots with allow_bots would answer each other forever.
    msg = translate(world, "message_other_bot_reply", Policy(allow_bots=True))
    assert msg is not None and not msg.addressed


def test_mentioning_the_bots_role_addresses_it(world: World) -> None:
    msg = translate(world, "message_bot_role_mention")
    assert msg is not None and msg.addressed
    assert msg.text == "summarize the thread"


def test_system_messages_are_ignored(world: World) -> None:
    assert translate(world, "message_thread_created") is None


def test_everyone_in_user_text_stays_plain_text(world: World) -> None:
    msg = translate(world, "message_everyone")
    assert msg is not None and msg.text == "@everyone who is here?"


def test_a_role_with_manage_server_makes_an_admin(world: World) -> None:
    bob = translate(world, "message_reply_to_bot")  # Moderator role has Manage Server
    assert bob is not None and bob.author_is_admin


def test_the_guild_owner_is_an_admin(world: World) -> None:
    carol = translate(world, "message_bot_role_mention")  # the guild owner
    assert carol is not None and carol.author_is_admin


def test_a_plain_member_is_no_admin(world: World) -> None:
    alice = world.message("message_mention")
    assert not _incoming(alice).author_is_admin


def test_a_role_listed_in_admin_roles_makes_an_admin(world: World) -> None:
    alice = world.message("message_mention")
    promoted = to_incoming(alice, BOT, Policy(admin_roles=frozenset({GUILD})))
    assert promoted is not None and promoted.author_is_admin  # @everyone role listed


def test_guild_allowlist(world: World) -> None:
    elsewhere = Policy(allowed_guilds=frozenset({"42"}))
    assert translate(world, "message_mention", elsewhere) is None
    here = Policy(allowed_guilds=frozenset({GUILD}))
    assert translate(world, "message_mention", here) is not None


def test_channel_allowlist_counts_a_thread_as_its_parent(world: World) -> None:
    general_only = Policy(allowed_channels=frozenset({GENERAL}))
    assert translate(world, "message_mention", general_only) is not None
    assert translate(world, "message_everyone", general_only) is None  # in #random
    # A thread counts as part of its parent channel.
    assert translate(world, "message_thread_followup", general_only) is not None


def test_role_allowlist(world: World) -> None:
    moderators = Policy(allowed_roles=frozenset({MODERATOR_ROLE}))
    assert translate(world, "message_mention", moderators) is None  # Alice has no role
    assert translate(world, "message_reply_to_bot", moderators) is not None  # Bob does


def test_guild_allowlists_keep_strangers_dms_out(world: World) -> None:
    assert translate(world, "message_dm", Policy(allowed_guilds=frozenset({GUILD}))) is None
    assert translate(world, "message_dm", Policy(allowed_roles=frozenset({HELPERS_ROLE}))) is None
    assert translate(world, "message_dm", Policy(allowed_channels=frozenset({DM_CHANNEL})))


def test_unknown_mentions_still_read_as_names(world: World) -> None:
    message = world.message(
        "message_plain", content="ask <@1999999999999999999> in <#1999999999999999998>"
    )
    assert readable_text(message, BOT) == "ask @unknown-user in #unknown-channel"


def test_slash_command_in_a_thread(world: World) -> None:
    interaction = world.interaction("interaction_system_thread")
    msg = command_incoming(interaction, OPEN, "system", "Answer like a pirate.")
    assert msg is not None
    assert msg.key == ConversationKey("discord", GUILD, GENERAL, thread=THREAD)
    assert msg.addressed and msg.in_thread
    assert msg.author_id == BOB
    assert msg.author_is_admin  # member.permissions has Manage Server
    assert msg.message_id == "interaction:1800000000000000001"


def test_slash_command_in_a_dm(world: World) -> None:
    interaction = world.interaction("interaction_reset_dm")
    msg = command_incoming(interaction, OPEN, "reset", "")
    assert msg is not None
    assert msg.key == ConversationKey("discord", "@dm", DM_CHANNEL, user=ALICE)
    assert msg.is_dm and not msg.author_is_admin


def test_slash_command_respects_allowlists(world: World) -> None:
    interaction = world.interaction("interaction_system_thread")
    assert (
        command_incoming(interaction, Policy(allowed_guilds=frozenset({"42"})), "help", "") is None
    )


def test_thread_name_is_the_message_shortened_or_the_author(world: World) -> None:
    msg = _incoming(world.message("message_mention"))
    assert thread_name(msg).startswith("hey @Bobby")
    long = replace(msg, text="x" * 300)
    assert len(thread_name(long)) <= 80
    assert thread_name(replace(msg, text="")) == "Alice"


def test_a_message_moved_to_a_thread_gets_the_threads_key(world: World) -> None:
    msg = _incoming(world.message("message_mention"))
    moved = moved_to_thread(msg, 77)
    assert moved.key == ConversationKey("discord", GUILD, GENERAL, thread="77")
    assert moved.in_thread


def test_invite_url_has_exactly_the_needed_scopes_and_permissions() -> None:
    url = invite_url(BOT, auto_thread=False)
    assert "scope=bot+applications.commands" in url
    perms = invite_permissions(auto_thread=False)
    assert f"permissions={perms.value}" in url
    assert perms == discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        read_message_history=True,
    )
    threads = invite_permissions(auto_thread=True)
    assert threads.create_public_threads and not perms.create_public_threads


def test_intents_ask_only_for_message_content_as_privileged() -> None:
    intents = gateway_intents(True)
    assert intents.message_content and intents.guild_messages and intents.dm_messages
    assert not intents.members and not intents.presences
    assert not gateway_intents(False).message_content


def _incoming(message: discord.Message) -> IncomingMessage:
    msg = to_incoming(message, BOT, OPEN)
    assert msg is not None
    return msg
