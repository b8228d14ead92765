"""Where a Discord answer goes, as a string stored with the question.

After a restart the adapter rebuilds its sink from this string alone
(``DiscordAdapter.sink_for``): the channel or thread to post in, the message to
reply to, and the guild, as compact JSON. Only this module reads or writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Target:
    """A place to answer in."""

    channel: int  # the channel, thread or DM to post in
    reply_to: int | None  # the question to reply to; None: a plain message
    guild: int | None = None  # None in DMs


def encode(target: Target) -> str:
    """The stored form."""
    fields = {"c": target.channel, "r": target.reply_to, "g": target.guild}
    return json.dumps(fields, separators=(",", ":"))


def decode(text: str) -> Target | None:
    """The target ``encode`` wrote; None for anything else."""
    try:
        fields = json.loads(text)
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    channel, reply_to, guild = fields.get("c"), fields.get("r"), fields.get("g")
    if not isinstance(channel, int) or not _snowflake(channel):
        return None
    if not all(v is None or _snowflake(v) for v in (reply_to, guild)):
        return None
    return Target(channel, reply_to, guild)


def _snowflake(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**64
