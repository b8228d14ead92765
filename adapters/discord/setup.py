"""What the bot asks Discord for: gateway intents, invite scopes and permissions."""

from __future__ import annotations

import discord

INVITE_SCOPES = ("bot", "applications.commands")

MESSAGE_CONTENT_WARNING = (
    "Discord: the Message Content intent is not enabled, so the bot only sees messages "
    "that mention it, reply to it, or are DMs; thread follow-ups without a mention need it. "
    "Enable it in the Developer Portal: your app -> Bot -> Privileged Gateway Intents -> "
    "Message Content Intent, then restart."
)
INVALID_TOKEN = (
    "Discord: the bot token was rejected. Copy a fresh token from the Developer Portal "
    "(your app -> Bot -> Reset Token) into DISCORD_BOT_TOKEN."
)
SHARDING_REQUIRED = (
    "Discord: the bot is in too many servers for one gateway connection (sharding "
    "required). Set discord.shard_count (DISCORD_SHARD_COUNT): 0 takes Discord's "
    "recommended number of shards, all run by this process."
)
PRIVILEGED_INTENT_REFUSED = (
    "Discord: the gateway refused the bot's intents. In the Developer Portal, open your "
    "app -> Bot -> Privileged Gateway Intents and check the settings, then restart."
)


def gateway_intents(message_content: bool) -> discord.Intents:
    """Server and DM messages plus the guild cache; no member list or presences.

    Only Message Content is privileged; without it Discord still sends the text of
    messages that mention the bot, reply to it, or are DMs.
    """
    intents = discord.Intents.none()
    intents.guilds = True  # channels, threads, roles: names for mentions, permissions
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = message_content
    return intents


def invite_permissions(auto_thread: bool) -> discord.Permissions:
    """Exactly what the bot uses in a channel."""
    perms = discord.Permissions.none()
    perms.view_channel = True
    perms.send_messages = True  # also covers the typing indicator and editing its own posts
    perms.send_messages_in_threads = True
    perms.read_message_history = True  # a reply to a message needs it
    if auto_thread:
        perms.create_public_threads = True
    return perms


def invite_url(application_id: int, auto_thread: bool) -> str:
    """The OAuth2 URL that adds the bot to a server with the scopes and permissions above."""
    return discord.utils.oauth_url(
        application_id,
        permissions=invite_permissions(auto_thread),
        scopes=INVITE_SCOPES,
    )
