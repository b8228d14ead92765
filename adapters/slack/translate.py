"""Slack event payloads → :class:`IncomingMessage`, as pure functions.

Nothing here does I/O: user names come in as a mapping the adapter filled
from its cache (see :func:`names_needed`), so every rule can be tested on
recorded JSON payloads alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.types import Attachment, ConversationKey, IncomingMessage, Platform

from . import target

if TYPE_CHECKING:
    from bot.config import SlackConfig

PLATFORM: Platform = "slack"
# Message subtypes that are still a person writing something new.
USER_SUBTYPES = frozenset({"thread_broadcast", "file_share"})
BOT_SUBTYPE = "bot_message"
DM_CHANNEL_TYPE = "im"
# <@U123>, <@U123|label>, <#C123|name>, <!here>, <https://x|text>
TOKEN_RE = re.compile(r"<([^<>\n]+)>")
LEADING_SPACE_RE = re.compile(r"^[\s,:;]+")
MANY_SPACES_RE = re.compile(r"[ \t]{2,}")
HTML_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
SPECIAL_MENTIONS = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}
# Event fields read as text; Slack sends strings (or leaves them out) in message events.
STRING_FIELDS = ("subtype", "channel", "ts", "thread_ts", "user", "bot_id", "text", "channel_type")


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is in this workspace (from auth.test)."""

    user_id: str
    bot_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Policy:
    """The part of ``cfg.slack`` that decides which events are answered."""

    scope: str = "thread"  # "thread" | "channel"
    allow_bots: bool = False
    allowed_teams: frozenset[str] = frozenset()
    allowed_channels: frozenset[str] = frozenset()
    allowed_users: frozenset[str] = frozenset()
    admin_users: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, slack: SlackConfig) -> Policy:
        """Build from ``cfg.slack``."""
        return cls(
            scope=slack.scope,
            allow_bots=slack.allow_bots,
            allowed_teams=frozenset(slack.allowed_teams),
            allowed_channels=frozenset(slack.allowed_channels),
            allowed_users=frozenset(slack.allowed_users),
            admin_users=frozenset(slack.admin_users),
        )


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message to hand to the core, plus where its answer goes."""

    message: IncomingMessage
    team_id: str
    channel: str
    reply_thread_ts: str | None  # None: a top-level reply (a DM outside threads)


def accept(body: Mapping[str, Any], bot: BotIdentity, policy: Policy) -> Mapping[str, Any] | None:
    """The event inside ``body`` if it is one we may answer, else None."""
    event = body.get("event")
    if not isinstance(event, Mapping) or event.get("type") not in ("app_mention", "message"):
        return None
    if not event.get("channel") or not event.get("ts"):
        return None
    if not _has_string_fields(event):
        return None  # malformed: a list subtype or a numeric text would break the rules below
    if not _is_new_message(event, policy):
        return None
    if _is_from_self(event, bot) or _author_id(event) is None:
        return None
    if _is_channel(event) and event["type"] == "message" and not _is_follow_up(event, bot, policy):
        return None
    if event.get("subtype") == "file_share" and not (event.get("text") or "").strip():
        if not event.get("files"):
            return None  # nothing to read, nothing to answer
    if not _allowed(body, event, policy):
        return None
    return event


def names_needed(event: Mapping[str, Any], bot: BotIdentity) -> set[str]:
    """User ids whose display names :func:`to_inbound` would use."""
    ids = {m.group(1)[1:].split("|", 1)[0] for m in TOKEN_RE.finditer(event.get("text") or "")}
    needed = {i for i in ids if i and not i.startswith(("#", "!"))} - {bot.user_id}
    needed = {i for i in needed if _looks_like_user(i)}
    author = _author_id(event)
    if author and not event.get("bot_id") and not _profile_name(event):
        needed.add(author)
    return needed


def names_in_order(event: Mapping[str, Any], bot: BotIdentity) -> list[str]:
    """:func:`names_needed`, most useful first: the author, then people as mentioned."""
    needed = names_needed(event, bot)
    author = _author_id(event)
    ordered = [author] if author in needed else []
    seen = set(ordered)
    for match in TOKEN_RE.finditer(event.get("text") or ""):
        ident = match.group(1)[1:].split("|", 1)[0]
        if ident in needed and ident not in seen:
            seen.add(ident)
            ordered.append(ident)
    return ordered


def to_inbound(
    body: Mapping[str, Any],
    bot: BotIdentity,
    policy: Policy,
    names: Mapping[str, str],
) -> Inbound | None:
    """Translate one Events API body; None when it is not for us."""
    event = accept(body, bot, policy)
    if event is None:
        return None
    team = _team_id(body, event)
    channel = str(event["channel"])
    ts = str(event["ts"])
    author = _author_id(event) or ""
    is_dm = event.get("channel_type") == DM_CHANNEL_TYPE
    thread = _thread_ts(event)
    if is_dm:
        key = ConversationKey(PLATFORM, team, channel, thread=thread, user=author)
        reply_thread = thread
    else:
        key_thread = None if policy.scope == "channel" else (thread or ts)
        key = ConversationKey(PLATFORM, team, channel, thread=key_thread)
        reply_thread = thread or ts
    message = IncomingMessage(
        key=key,
        message_id=ts,  # the ts is what every redelivery shares: the dedupe key
        author_id=author,
        author_name=_author_name(event, names),
        text=render_text(event.get("text") or "", bot, names),
        sent_at=_ts_seconds(ts),
        addressed=is_dm or event["type"] == "app_mention",
        in_thread=thread is not None and not is_dm,
        is_dm=is_dm,
        author_is_admin=author in policy.admin_users,
        reply_target=target.encode(target.Target(team, channel, reply_thread, author)),
        attachments=files_of(event),
    )
    return Inbound(message=message, team_id=team, channel=channel, reply_thread_ts=reply_thread)


def files_of(event: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """The event's files as Slack describes them (downloaded later with the bot token)."""
    files = event.get("files")
    if not isinstance(files, list):
        return ()
    found = []
    for item in files:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        url = item.get("url_private_download") or item.get("url_private") or ""
        size = item.get("size")
        found.append(
            Attachment(
                name=str(item.get("name") or item.get("title") or item["id"]),
                url=url if isinstance(url, str) else "",
                size=size if isinstance(size, int) else 0,
                content_type=str(item.get("mimetype") or ""),
                file_id=item["id"],
            )
        )
    return tuple(found)


def to_incoming(
    body: Mapping[str, Any], bot: BotIdentity, policy: Policy, names: Mapping[str, str]
) -> IncomingMessage | None:
    """Just the message of :func:`to_inbound`."""
    inbound = to_inbound(body, bot, policy, names)
    return None if inbound is None else inbound.message


def render_text(text: str, bot: BotIdentity, names: Mapping[str, str]) -> str:
    """Slack's escaped markup → plain text for the model.

    ``<@U1>`` → ``@Name``, ``<#C1|general>`` → ``#general``, ``<url|label>`` →
    ``label (url)``; the bot's own leading mention is dropped and later ones
    become ``@<bot name>``.
    """
    stripped = _strip_leading_bot_mentions(text, bot.user_id)
    out: list[str] = []
    pos = 0
    for match in TOKEN_RE.finditer(stripped):
        out.append(_unescape(stripped[pos : match.start()]))
        out.append(_render_token(match.group(1), bot, names))
        pos = match.end()
    out.append(_unescape(stripped[pos:]))
    return MANY_SPACES_RE.sub(" ", "".join(out)).strip()


# -- rules -------------------------------------------------------------------


def _has_string_fields(event: Mapping[str, Any]) -> bool:
    return all(isinstance(event.get(f), str | None) for f in STRING_FIELDS)


def _is_new_message(event: Mapping[str, Any], policy: Policy) -> bool:
    subtype = event.get("subtype")
    if subtype is None or subtype in USER_SUBTYPES:
        return not event.get("bot_id") or policy.allow_bots
    return subtype == BOT_SUBTYPE and policy.allow_bots


def _is_from_self(event: Mapping[str, Any], bot: BotIdentity) -> bool:
    if event.get("user") == bot.user_id:
        return True
    return bool(bot.bot_id) and event.get("bot_id") == bot.bot_id


def _is_channel(event: Mapping[str, Any]) -> bool:
    return event.get("channel_type") != DM_CHANNEL_TYPE


def _is_follow_up(event: Mapping[str, Any], bot: BotIdentity, policy: Policy) -> bool:
    """A channel message without a mention: only a thread reply may be answered.

    A message that mentions the bot also arrives as ``app_mention``, which
    answers it; in channel scope a thread reply needs a mention.
    """
    if policy.scope == "channel" or _mentions(event.get("text") or "", bot.user_id):
        return False
    thread = _thread_ts(event)
    return thread is not None and thread != event.get("ts")


def _thread_ts(event: Mapping[str, Any]) -> str | None:
    thread = event.get("thread_ts")
    return str(thread) if thread else None


def _mentions(text: str, user_id: str) -> bool:
    return f"<@{user_id}>" in text or f"<@{user_id}|" in text


def _allowed(body: Mapping[str, Any], event: Mapping[str, Any], policy: Policy) -> bool:
    if policy.allowed_teams and _team_id(body, event) not in policy.allowed_teams:
        return False
    if policy.allowed_users and _author_id(event) not in policy.allowed_users:
        return False
    # DM channel ids are per person; allowed_users governs DMs.
    return not (
        policy.allowed_channels
        and _is_channel(event)
        and event.get("channel") not in policy.allowed_channels
    )


def _team_id(body: Mapping[str, Any], event: Mapping[str, Any]) -> str:
    return str(body.get("team_id") or event.get("team") or "")


def _author_id(event: Mapping[str, Any]) -> str | None:
    author = event.get("user") or event.get("bot_id")
    return str(author) if author else None


def _profile_name(event: Mapping[str, Any]) -> str:
    profile = event.get("user_profile")
    if isinstance(profile, Mapping):
        for field in ("display_name", "real_name", "name"):
            value = profile.get(field)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return ""


def _author_name(event: Mapping[str, Any], names: Mapping[str, str]) -> str:
    author = _author_id(event) or ""
    if event.get("bot_id") and not event.get("user"):
        profile = event.get("bot_profile")
        label = profile.get("name") if isinstance(profile, Mapping) else None
        return str(label or event.get("username") or author)
    return names.get(author) or _profile_name(event) or author


def _ts_seconds(ts: str) -> float:
    try:
        seconds = float(ts)
    except ValueError:
        return 0.0
    # float() also takes "nan" and "inf"; a NaN time cannot even be stored (NOT NULL).
    return seconds if math.isfinite(seconds) else 0.0


def _looks_like_user(ident: str) -> bool:
    return ident[:1] in ("U", "W") and ident[1:].isalnum()


# -- markup --------------------------------------------------------------------


def _strip_leading_bot_mentions(text: str, user_id: str) -> str:
    pattern = re.compile(rf"^\s*<@{re.escape(user_id)}(?:\|[^>]*)?>[\s,:;]*")
    while True:
        shorter = pattern.sub("", text, count=1)
        if shorter == text:
            return text
        text = shorter


def _render_token(inner: str, bot: BotIdentity, names: Mapping[str, str]) -> str:
    target, _, label = inner.partition("|")
    label = _unescape(label)
    if target.startswith("@"):
        ident = target[1:]
        if ident == bot.user_id:
            return f"@{bot.name}"
        return "@" + (names.get(ident) or label.lstrip("@") or ident)
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!"):
        return _render_special(target[1:], label)
    return _render_link(_unescape(target), label)


def _render_special(target: str, label: str) -> str:
    if target in SPECIAL_MENTIONS:
        return SPECIAL_MENTIONS[target]
    if label:
        return label  # <!subteam^S1|@team>, <!date^...|fallback>
    return "@" + target.split("^", 1)[0]


def _render_link(url: str, label: str) -> str:
    if url.startswith("mailto:"):
        address = url.removeprefix("mailto:")
        return address if label in ("", address) else f"{label} ({address})"
    if not label or label == url or label == url.split("://", 1)[-1]:
        return url
    return f"{label} ({url})"


def _unescape(text: str) -> str:
    for entity, char in HTML_ENTITIES:
        text = text.replace(entity, char)
    return text
