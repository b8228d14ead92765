"""Turn a discord.py message or slash command into an :class:`IncomingMessage`.

Pure: reads only the parsed payload and discord.py's guild cache (roles,
channels, members filled from GUILD_CREATE), never the network. The adapter
decides what to do with the result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import discord

from bot.config import DiscordConfig
from bot.types import Attachment, ConversationKey, IncomingMessage, Platform

from . import target

PLATFORM: Platform = "discord"
DM_WORKSPACE = "@dm"
THREAD_NAME_MAX = 80  # Discord allows 100; shorter names read better in the sidebar
# A tuple, compared with ==: discord.py wraps an unknown type value in a proxy that
# may not be hashable (a list), and a set lookup would raise TypeError.
CHAT_TYPES = (discord.MessageType.default, discord.MessageType.reply)
TRAILING_PUNCTUATION = ",.!?:;)"

# Snowflakes are 64-bit (at most 20 digits); a longer run is no mention, and int()
# refuses strings of more than 4,300 digits.
USER_MENTION = re.compile(r"<@!?(\d{1,20})>")
ROLE_MENTION = re.compile(r"<@&(\d{1,20})>")
CHANNEL_MENTION = re.compile(r"<#(\d{1,20})>")
CUSTOM_EMOJI = re.compile(r"<a?:(\w+):\d+>")
COMMAND_MENTION = re.compile(r"</([^:>]+):\d+>")


@dataclass(frozen=True, slots=True)
class Policy:
    """Who may talk to the bot, and who counts as an admin (from ``cfg.discord``)."""

    allow_bots: bool = False
    allowed_guilds: frozenset[str] = frozenset()  # empty: every guild
    allowed_channels: frozenset[str] = frozenset()  # channel or thread ids, or a thread's parent
    allowed_roles: frozenset[str] = frozenset()
    admin_roles: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, cfg: DiscordConfig) -> Policy:
        """The policy of ``cfg.discord``."""
        return cls(
            allow_bots=cfg.allow_bots,
            allowed_guilds=frozenset(cfg.allowed_guilds),
            allowed_channels=frozenset(cfg.allowed_channels),
            allowed_roles=frozenset(cfg.allowed_roles),
            admin_roles=frozenset(cfg.admin_roles),
        )

    @property
    def guild_only(self) -> bool:
        """A guild or role allowlist keeps strangers' DMs out too."""
        return bool(self.allowed_guilds or self.allowed_roles)


# -- conversation keys ------------------------------------------------------------------------


def conversation_key(channel: object, guild_id: int | None, author_id: int) -> ConversationKey:
    """Per channel in servers, per thread in threads, per person in DMs."""
    if guild_id is None:
        return ConversationKey(PLATFORM, DM_WORKSPACE, _id_of(channel), user=str(author_id))
    if isinstance(channel, discord.Thread):
        return ConversationKey(
            PLATFORM, str(guild_id), str(channel.parent_id), thread=str(channel.id)
        )
    return ConversationKey(PLATFORM, str(guild_id), _id_of(channel))


def thread_key(parent_key: ConversationKey, thread_id: int) -> ConversationKey:
    """The key of a thread opened from a message in ``parent_key``'s channel."""
    return replace(parent_key, thread=str(thread_id))


def _id_of(channel: object) -> str:
    return str(getattr(channel, "id", ""))


# -- access -----------------------------------------------------------------------------------


def allowed_here(
    policy: Policy, guild_id: int | None, channel: object, role_ids: frozenset[str]
) -> bool:
    """Whether the allowlists let this author talk to the bot in this channel."""
    if guild_id is None:
        return not policy.guild_only and _channel_allowed(policy, channel)
    if policy.allowed_guilds and str(guild_id) not in policy.allowed_guilds:
        return False
    if not _channel_allowed(policy, channel):
        return False
    return not policy.allowed_roles or bool(role_ids & policy.allowed_roles)


def _channel_allowed(policy: Policy, channel: object) -> bool:
    if not policy.allowed_channels:
        return True
    ids = {_id_of(channel)}
    if isinstance(channel, discord.Thread):
        ids.add(str(channel.parent_id))  # a thread in an allowed channel is allowed
    return bool(ids & policy.allowed_channels)


def role_ids_of(author: discord.abc.User) -> frozenset[str]:
    """The author's role ids in this guild (empty outside guilds)."""
    if isinstance(author, discord.Member):
        return frozenset(str(r.id) for r in author.roles)
    return frozenset()


def is_admin(
    permissions: discord.Permissions | None, role_ids: frozenset[str], policy: Policy
) -> bool:
    """Manage Server (or Administrator, which implies it) or one of the admin roles."""
    if permissions is not None and (permissions.administrator or permissions.manage_guild):
        return True
    return bool(role_ids & policy.admin_roles)


# -- messages ---------------------------------------------------------------------------------


def to_incoming(message: discord.Message, bot_id: int, policy: Policy) -> IncomingMessage | None:
    """The core's view of ``message``, or None when the bot must not react to it."""
    author = message.author
    if author.id == bot_id or message.type not in CHAT_TYPES:
        return None
    from_bot = author.bot or message.webhook_id is not None
    if from_bot and not policy.allow_bots:
        return None
    guild_id = _guild_id_of(message)
    roles = role_ids_of(author)
    if not allowed_here(policy, guild_id, message.channel, roles):
        return None
    is_dm = guild_id is None
    # A bot replying to us is not a request: two bots would answer each other forever.
    addressed = (
        is_dm or mentions_bot(message, bot_id) or (not from_bot and replies_to_bot(message, bot_id))
    )
    text = readable_text(message, bot_id)
    files = attachments_of(message)
    if not text and not files and not addressed:
        return None  # e.g. a thread message without the Message Content intent
    permissions = author.guild_permissions if isinstance(author, discord.Member) else None
    return IncomingMessage(
        key=conversation_key(message.channel, guild_id, author.id),
        message_id=str(message.id),
        author_id=str(author.id),
        author_name=author.display_name,
        text=text,
        sent_at=message.created_at.timestamp(),
        addressed=addressed,
        in_thread=isinstance(message.channel, discord.Thread),
        is_dm=is_dm,
        author_is_admin=is_admin(permissions, roles, policy),
        reply_target=target.encode(target.Target(message.channel.id, message.id, guild_id)),
        attachments=files,
    )


def attachments_of(message: discord.Message) -> tuple[Attachment, ...]:
    """The message's files, as Discord describes them (downloaded later, if at all)."""
    return tuple(
        Attachment(a.filename, a.url, a.size, a.content_type or "") for a in message.attachments
    )


def _guild_id_of(message: discord.Message) -> int | None:
    if message.guild is not None:
        return message.guild.id
    # A guild missing from the cache (an outage) still is not a DM.
    guild_id = getattr(message.channel, "guild_id", None)
    return guild_id if isinstance(guild_id, int) else None


def mentions_bot(message: discord.Message, bot_id: int) -> bool:
    """A direct mention, or a mention of the bot's own managed role."""
    if bot_id in message.raw_mentions:
        return True
    return any(_is_bot_role(r, bot_id) for r in message.role_mentions)


def replies_to_bot(message: discord.Message, bot_id: int) -> bool:
    """Whether ``message`` is a reply to one of the bot's messages."""
    ref = message.reference
    resolved = ref.resolved if ref is not None else None
    return isinstance(resolved, discord.Message) and resolved.author.id == bot_id


def _is_bot_role(role: discord.Role, bot_id: int) -> bool:
    tags = role.tags
    return tags is not None and tags.bot_id == bot_id


def readable_text(message: discord.Message, bot_id: int) -> str:
    """The content with mentions as names, the bot's own mention removed."""
    guild = message.guild
    people = {m.id: m.display_name for m in message.mentions}

    def person(uid: int) -> str | None:
        if uid == bot_id:
            return None
        name = people.get(uid)
        if name is None and guild is not None:
            cached = guild.get_member(uid)
            name = cached.display_name if cached is not None else None
        return f"@{name or 'unknown-user'}"

    def group(rid: int) -> str | None:
        found = guild.get_role(rid) if guild is not None else None
        if found is not None and _is_bot_role(found, bot_id):
            return None
        return f"@{found.name}" if found is not None else "@unknown-role"

    def place(cid: int) -> str | None:
        found = guild.get_channel_or_thread(cid) if guild is not None else None
        return f"#{found.name}" if found is not None else "#unknown-channel"

    text = message.content
    text = _substitute(USER_MENTION, text, person)
    text = _substitute(ROLE_MENTION, text, group)
    text = _substitute(CHANNEL_MENTION, text, place)
    text = CUSTOM_EMOJI.sub(r":\1:", text)
    text = COMMAND_MENTION.sub(r"/\1", text)
    return text.strip()


def _substitute(pattern: re.Pattern[str], text: str, name_of: Callable[[int], str | None]) -> str:
    """Replace each match by its name; a None name removes the match and the spaces after it."""
    out: list[str] = []
    pos = 0
    for match in pattern.finditer(text):
        name = name_of(int(match.group(1)))
        out.append(text[pos : match.start()])
        pos = match.end()
        if name is not None:
            out.append(name)
            continue
        rest = text[pos:]
        stripped = rest.lstrip(" \t")
        pos += len(rest) - len(stripped)
        if not stripped or stripped[0] in TRAILING_PUNCTUATION:
            out[-1] = out[-1].rstrip(" \t")  # "hi <@bot>, x" -> "hi, x"
    out.append(text[pos:])
    return "".join(out)


def thread_name(msg: IncomingMessage) -> str:
    """A thread title from the first line of the question (or the author's name)."""
    first = msg.text.strip().splitlines()[0].strip() if msg.text.strip() else ""
    name = first or msg.author_name
    if len(name) > THREAD_NAME_MAX:
        name = name[: THREAD_NAME_MAX - 1].rstrip() + "…"
    return name


def moved_to_thread(msg: IncomingMessage, thread_id: int) -> IncomingMessage:
    """``msg`` as the opening message of the thread the bot made for it."""
    where = target.decode(msg.reply_target or "")
    guild = None if where is None else where.guild
    moved = target.encode(target.Target(thread_id, None, guild))  # the thread opens with it
    return replace(msg, key=thread_key(msg.key, thread_id), in_thread=True, reply_target=moved)


# -- slash commands ---------------------------------------------------------------------------


def command_incoming(
    interaction: discord.Interaction, policy: Policy, name: str, arg: str
) -> IncomingMessage | None:
    """A slash command as a message in the conversation of the channel it was used in."""
    author = interaction.user
    channel = interaction.channel
    if channel is None:
        return None
    guild_id = interaction.guild_id
    roles = role_ids_of(author)
    if not allowed_here(policy, guild_id, channel, roles):
        return None
    # Guild interactions carry the member's permissions in this channel.
    permissions = interaction.permissions if guild_id is not None else None
    text = f"/{name} {arg}".strip()
    return IncomingMessage(
        key=conversation_key(channel, guild_id, author.id),
        message_id=f"interaction:{interaction.id}",
        author_id=str(author.id),
        author_name=author.display_name,
        text=text,
        sent_at=interaction.created_at.timestamp(),
        addressed=True,
        in_thread=isinstance(channel, discord.Thread),
        is_dm=guild_id is None,
        author_is_admin=is_admin(permissions, roles, policy),
    )
