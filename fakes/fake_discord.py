"""A fake Discord (REST v10 + gateway) on loopback that the real discord.py talks to.

The server keeps a tiny world (the bot user, guilds with channels, roles and
members, threads, DM channels, messages), answers the REST calls the adapter
makes, and runs the gateway websocket: HELLO, IDENTIFY -> READY + GUILD_CREATE,
heartbeats, RESUME, and the close codes 4004 (bad token), 4010 (a shard that does
not exist), 4011 (sharding required) and 4014 (privileged intent not allowed).

Shards: with ``shard_count`` above 1 each IDENTIFY names its shard (``[id, count]``),
one connection per shard, and like Discord the fake sends a guild's events only on
shard ``(guild_id >> 22) % shard_count`` and DMs only on shard 0. An IDENTIFY without
a shard when there are several gets 4011; one with another count gets 4010 (Discord
would accept a larger count; the fake keeps one).

Tests push events with :meth:`FakeDiscord.dispatch` and assert on
:attr:`FakeDiscord.calls`, the recorded REST requests.

Point discord.py at it with :func:`pointed_at` (a context manager that sets
``discord.http.Route.BASE`` and the default gateway URL, and restores them).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from fakes.served import Served

HOST = "127.0.0.1"
API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
HEARTBEAT_INTERVAL_MS = 41_250
SHUTDOWN_TIMEOUT_S = 0.25

# Gateway opcodes and close codes (only the ones the fake speaks).
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 9, 10, 11
CLOSE_AUTH_FAILED = 4004
CLOSE_INVALID_SHARD = 4010
CLOSE_SHARDING_REQUIRED = 4011
CLOSE_DISALLOWED_INTENTS = 4014

# Privileged intent bits: GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT.
INTENT_MEMBERS = 1 << 1
INTENT_PRESENCES = 1 << 8
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_MEMBERS | INTENT_PRESENCES | INTENT_MESSAGE_CONTENT

# Channel types.
GUILD_TEXT, DM, PUBLIC_THREAD = 0, 1, 11

# Permission bits used in role payloads.
PERM_ADMINISTRATOR = 1 << 3
PERM_MANAGE_GUILD = 1 << 5
PERM_EVERYONE_DEFAULT = (1 << 10) | (1 << 11) | (1 << 16) | (1 << 38)  # view, send, history, thr

EPHEMERAL_FLAG = 1 << 6
UPDATE_MESSAGE = 7  # interaction callback type: edit the message whose button was pressed
MAX_CONTENT = 2000  # Discord rejects longer message content with 400 / 50035

JsonDict = dict[str, Any]
Reply = tuple[int, Any, dict[str, str]]  # status, JSON body, headers
Handler = Callable[..., Awaitable[Reply]]


# -- payload builders (shapes follow Discord's API v10) ------------------------------------


def iso(ts: float) -> str:
    """An ISO 8601 timestamp as Discord writes it."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


def user(uid: str, name: str, *, bot: bool = False, global_name: str | None = None) -> JsonDict:
    """A user object."""
    data: JsonDict = {
        "id": uid,
        "username": name,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": None,
        "public_flags": 0,
    }
    if bot:
        data["bot"] = True
    return data


def member(
    who: JsonDict, *, roles: tuple[str, ...] = (), nick: str | None = None, joined: float = 0.0
) -> JsonDict:
    """A guild member object (with its user)."""
    return {
        "user": who,
        "nick": nick,
        "roles": list(roles),
        "joined_at": iso(joined or 1_600_000_000.0),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "avatar": None,
    }


def role(
    rid: str, name: str, *, permissions: int = 0, position: int = 1, bot_id: str | None = None
) -> JsonDict:
    """A role object; ``bot_id`` makes it the managed role of that bot."""
    data: JsonDict = {
        "id": rid,
        "name": name,
        "color": 0,
        "hoist": False,
        "position": position,
        "permissions": str(permissions),
        "managed": bot_id is not None,
        "mentionable": True,
        "flags": 0,
    }
    if bot_id is not None:
        data["tags"] = {"bot_id": bot_id}
    return data


def text_channel(cid: str, name: str, *, position: int = 0) -> JsonDict:
    """A guild text channel (the guild id is filled in by :func:`guild`)."""
    return {
        "id": cid,
        "type": GUILD_TEXT,
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "nsfw": False,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "parent_id": None,
    }


def thread_channel(
    tid: str, guild_id: str, parent_id: str, name: str, *, owner_id: str
) -> JsonDict:
    """A public thread."""
    return {
        "id": tid,
        "type": PUBLIC_THREAD,
        "guild_id": guild_id,
        "parent_id": parent_id,
        "owner_id": owner_id,
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": iso(time.time()),
            "locked": False,
        },
    }


def guild(
    gid: str,
    name: str,
    *,
    owner_id: str,
    channels: list[JsonDict],
    roles: list[JsonDict] | None = None,
    members: list[JsonDict] | None = None,
    threads: list[JsonDict] | None = None,
) -> JsonDict:
    """A GUILD_CREATE payload; the @everyone role (id = guild id) is added."""
    everyone = role(gid, "@everyone", permissions=PERM_EVERYONE_DEFAULT, position=0)
    return {
        "id": gid,
        "name": name,
        "icon": None,
        "owner_id": owner_id,
        "unavailable": False,
        "member_count": len(members or []),
        "large": False,
        "joined_at": iso(1_600_000_000.0),
        "features": [],
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "system_channel_id": None,
        "afk_channel_id": None,
        "afk_timeout": 300,
        "emojis": [],
        "stickers": [],
        "roles": [everyone, *(roles or [])],
        "channels": [dict(c, guild_id=gid) for c in channels],
        "threads": list(threads or []),
        "members": list(members or []),
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


@dataclass(frozen=True, slots=True)
class RestCall:
    """One REST request the fake received."""

    method: str
    path: str  # without the /api/v10 prefix, e.g. /channels/1/messages
    json: Any
    at: float  # time.monotonic() when it arrived
    status: int  # what the fake answered
    query: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: JsonDict
    headers: dict[str, str]
    times: int


@dataclass(slots=True)
class _Session:
    session_id: str
    seq: int = 0
    sent: deque[JsonDict] = field(default_factory=lambda: deque(maxlen=1000))


@dataclass(slots=True)
class _Link:
    """One shard's gateway connection and session (the only one when not sharded)."""

    ws: web.WebSocketResponse | None = None
    transport: asyncio.Transport | None = None  # for abrupt drops
    session: _Session | None = None
    pending: list[JsonDict] = field(default_factory=list)  # dispatched while not connected

    @property
    def open(self) -> bool:
        return self.session is not None and self.ws is not None and not self.ws.closed


class FakeDiscord(Served):
    """REST + gateway on 127.0.0.1; a scriptable stand-in for discord.com."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        bot_id: str = "900000000000000001",
        bot_name: str = "Chatbridge",
        app_flags: int = 0,
        allowed_intents: int = PRIVILEGED_INTENTS,
        echo_own_messages: bool = True,
        channel_write_limit: tuple[int, float] | None = None,
        gateway_token: str | None = None,
        shard_count: int = 1,
    ) -> None:
        self.token = token
        self.shard_count = shard_count  # also what GET /gateway/bot recommends
        # The gateway may disagree with REST (a token reset between the two): 4004.
        self.gateway_token = gateway_token or token
        self.bot = user(bot_id, bot_name, bot=True)
        self.app_id = bot_id  # Discord gives a bot's application the same id
        self.app_flags = app_flags
        self.allowed_intents = allowed_intents
        self.echo_own_messages = echo_own_messages
        # (writes, seconds): more POST/PATCH message writes than this in one channel
        # within the window gets a 429, like Discord's per-channel bucket.
        self.channel_write_limit = channel_write_limit
        self.calls: list[RestCall] = []
        self.identifies: list[JsonDict] = []
        self.resumes: list[JsonDict] = []
        self.guilds: dict[str, JsonDict] = {}
        self.channels: dict[str, JsonDict] = {}  # every channel and thread by id
        self.messages: dict[str, JsonDict] = {}
        self.posted: list[str] = []  # ids of messages the bot created over REST, in order
        self.commands: list[JsonDict] = []
        self.connected = asyncio.Event()  # set once every shard was sent READY (or RESUMED)
        self._ids = itertools.count(1)
        self._failures: list[_Failure] = []
        self._windows: dict[str, tuple[float, int]] = {}  # channel -> (opened, writes)
        self._links = {shard: _Link() for shard in range(shard_count)}
        self._live: set[int] = set()  # shards sent READY or RESUMED since their last drop
        self._pressed: dict[str, str] = {}  # interaction token -> the pressed message's id
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self.port = 0
        # CDN files by attachment id: (filename, bytes, signature the URL must carry).
        self._files: dict[str, tuple[str, bytes, str]] = {}
        self.file_downloads: list[str] = []  # attachment ids, as downloaded

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be."""
        return f"http://{HOST}:{self.port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """The gateway websocket URL (also what GET /gateway/bot returns)."""
        return f"ws://{HOST}:{self.port}/gateway"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{channel}/{id}/{name}", self._cdn)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S, handle_signals=False
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def close(self) -> None:
        """Close the gateway sockets and stop the server."""
        for link in self._links.values():
            if link.ws is not None and not link.ws.closed:
                await link.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- building the world ------------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh snowflake whose timestamp is now."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._ids) & 0x3FFFFF))

    def add_guild(self, data: JsonDict) -> JsonDict:
        """Register a GUILD_CREATE payload (see :func:`guild`); the bot becomes a member."""
        members = data.setdefault("members", [])
        if not any(m["user"]["id"] == self.bot["id"] for m in members):
            members.append(member(self.bot))
        data["member_count"] = len(members)
        self.guilds[data["id"]] = data
        for ch in [*data["channels"], *data["threads"]]:
            self.channels[ch["id"]] = ch
        return data

    def add_dm(self, cid: str, recipient: JsonDict) -> JsonDict:
        """A DM channel between the bot and ``recipient``."""
        ch = {"id": cid, "type": DM, "recipients": [recipient], "last_message_id": None}
        self.channels[cid] = ch
        return ch

    def find_member(self, guild_id: str, uid: str) -> JsonDict | None:
        """The member payload of ``uid`` in a guild, if the fake knows it."""
        for m in self.guilds[guild_id]["members"]:
            if m["user"]["id"] == uid:
                return dict(m)
        return None

    def user_message(
        self,
        channel_id: str,
        author: JsonDict,
        content: str,
        *,
        mentions: tuple[JsonDict, ...] = (),
        mention_roles: tuple[str, ...] = (),
        reply_to: str | None = None,
        message_id: str | None = None,
        mention_everyone: bool = False,
        attachments: tuple[JsonDict, ...] = (),
    ) -> JsonDict:
        """A MESSAGE_CREATE payload from ``author`` (member data added in guilds)."""
        ch = self.channels[channel_id]
        gid = ch.get("guild_id")
        mid = message_id or self.new_id()
        data: JsonDict = {
            "id": mid,
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": iso(time.time()),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": mention_everyone,
            "mentions": [self._mention(gid, m) for m in mentions],
            "mention_roles": list(mention_roles),
            "attachments": list(attachments),
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }
        if gid is not None:
            data["guild_id"] = gid
            found = self.find_member(gid, author["id"])
            if found is not None:
                found.pop("user", None)
                data["member"] = found
        if reply_to is not None:
            data["type"] = 19
            data["message_reference"] = {
                "type": 0,
                "message_id": reply_to,
                "channel_id": channel_id,
            }
            if gid is not None:
                data["message_reference"]["guild_id"] = gid
            data["referenced_message"] = self.messages.get(reply_to)
        self.messages[mid] = data
        return data

    def interaction(
        self,
        channel_id: str,
        author: JsonDict,
        name: str,
        options: dict[str, str] | None = None,
        *,
        permissions: int = PERM_EVERYONE_DEFAULT,
    ) -> JsonDict:
        """An INTERACTION_CREATE payload for a chat-input slash command."""
        ch = self.channels[channel_id]
        gid = ch.get("guild_id")
        cmd_id = next((c["id"] for c in self.commands if c["name"] == name), self.new_id())
        data: JsonDict = {
            "id": self.new_id(),
            "application_id": self.app_id,
            "type": 2,
            "token": f"itoken-{next(self._ids)}",
            "version": 1,
            "locale": "en-US",
            "app_permissions": str(PERM_EVERYONE_DEFAULT),
            "attachment_size_limit": 10 * 1024 * 1024,
            "entitlements": [],
            "authorizing_integration_owners": {"0": gid} if gid else {"1": author["id"]},
            "context": 0 if gid else 1,
            "channel_id": channel_id,
            "channel": self._partial_channel(ch),
            "data": {
                "id": cmd_id,
                "name": name,
                "type": 1,
                "options": [{"name": k, "type": 3, "value": v} for k, v in (options or {}).items()],
            },
        }
        if gid is not None:
            found = self.find_member(gid, author["id"]) or member(author)
            found["user"] = author
            found["permissions"] = str(permissions)
            data["guild_id"] = gid
            data["guild_locale"] = "en-US"
            data["member"] = found
        else:
            data["user"] = author
        return data

    def button_press(self, message_id: str, author: JsonDict, custom_id: str) -> JsonDict:
        """An INTERACTION_CREATE payload for a press on a button of a bot message."""
        message = self.messages[message_id]
        channel_id = message["channel_id"]
        data = self.interaction(channel_id, author, "")
        data["type"] = 3  # MESSAGE_COMPONENT
        data["message"] = message
        data["data"] = {"custom_id": custom_id, "component_type": 2}
        self._pressed[data["token"]] = message_id
        return data

    async def press_button(self, message_id: str, author: JsonDict, custom_id: str) -> None:
        """Press a button on a bot message as ``author`` (dispatches INTERACTION_CREATE)."""
        await self.dispatch("INTERACTION_CREATE", self.button_press(message_id, author, custom_id))

    def buttons(self, message_id: str) -> list[JsonDict]:
        """The buttons on a message, as the bot sent them (empty once removed)."""
        rows = self.messages[message_id].get("components") or []
        return [c for row in rows for c in row.get("components", []) if c.get("type") == 2]

    def _mention(self, guild_id: str | None, who: JsonDict) -> JsonDict:
        data = dict(who)
        if guild_id is not None:
            found = self.find_member(guild_id, who["id"])
            if found is not None:
                found.pop("user", None)
                data["member"] = found
        return data

    @staticmethod
    def _partial_channel(ch: JsonDict) -> JsonDict:
        keys = ("id", "type", "name", "guild_id", "parent_id", "recipients", "thread_metadata")
        data = {k: ch[k] for k in keys if k in ch}
        data.setdefault("permissions", str(PERM_EVERYONE_DEFAULT))
        data.setdefault("flags", 0)
        return data

    # -- test controls -----------------------------------------------------------------------

    def shard_of(self, data: JsonDict) -> int:
        """The shard an event goes out on: its guild's, and 0 without a guild (DMs)."""
        guild_id = data.get("guild_id")
        return 0 if guild_id is None else (int(guild_id) >> 22) % self.shard_count

    def events_on(self, shard: int, event: str) -> list[JsonDict]:
        """The payloads of ``event`` sent on ``shard`` in its current session (the last 1,000)."""
        session = self._links[shard].session
        sent = [] if session is None else list(session.sent)
        return [frame["d"] for frame in sent if frame.get("t") == event]

    async def dispatch(self, event: str, data: JsonDict) -> None:
        """Send a DISPATCH event over its shard's gateway (queued while disconnected)."""
        frame: JsonDict = {"op": OP_DISPATCH, "t": event, "d": data}
        link = self._links[self.shard_of(data)]
        if not link.open:
            link.pending.append(frame)
            return
        await self._send_dispatch(link, frame)

    def add_file(self, channel_id: str, name: str, data: bytes, content_type: str = "") -> JsonDict:
        """An attachment object for :meth:`user_message`, its bytes served from a
        signed CDN URL (a wrong or missing signature gets 404, as on Discord's CDN)."""
        file_id = self.new_id()
        signature = uuid.uuid4().hex
        self._files[file_id] = (name, data, signature)
        url = f"http://{HOST}:{self.port}/attachments/{channel_id}/{file_id}/{name}"
        signed = f"{url}?ex=ffffffff&is=0&hm={signature}"
        attachment: JsonDict = {
            "id": file_id,
            "filename": name,
            "size": len(data),
            "url": signed,
            "proxy_url": signed,
        }
        if content_type:
            attachment["content_type"] = content_type
        return attachment

    async def _cdn(self, request: web.Request) -> web.Response:
        found = self._files.get(request.match_info["id"])
        if found is None or request.query.get("hm") != found[2]:
            return web.Response(status=404, text="This content is no longer available.")
        self.file_downloads.append(request.match_info["id"])
        return web.Response(body=found[1], content_type="application/octet-stream")

    async def send_message(self, *args: Any, **kwargs: Any) -> JsonDict:
        """Build a user message (see :meth:`user_message`) and dispatch MESSAGE_CREATE."""
        data = self.user_message(*args, **kwargs)
        await self.dispatch("MESSAGE_CREATE", data)
        return data

    async def send_interaction(self, *args: Any, **kwargs: Any) -> JsonDict:
        """Build a slash command (see :meth:`interaction`) and dispatch INTERACTION_CREATE."""
        data = self.interaction(*args, **kwargs)
        await self.dispatch("INTERACTION_CREATE", data)
        return data

    async def drop_connection(
        self, code: int = 4000, *, abrupt: bool = False, shard: int = 0
    ) -> None:
        """Close a shard's gateway socket with a resumable code; discord.py should RESUME.

        ``abrupt`` cuts the TCP connection without a close frame, like a network drop.
        """
        self.connected.clear()
        self._live.discard(shard)
        link = self._links[shard]
        if abrupt and link.transport is not None:
            link.transport.abort()
            link.ws = None  # events dispatched from now on wait for the next connection
            return
        if link.ws is not None and not link.ws.closed:
            await link.ws.close(code=code)

    def fail(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 500,
        body: JsonDict | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching REST calls with an error."""
        payload = body or {"message": f"{status}: injected failure", "code": 0}
        self._failures.append(
            _Failure(method.upper(), re.compile(path_regex), status, payload, {}, times)
        )

    def rate_limit(self, method: str, path_regex: str, *, retry_after: float = 0.2) -> None:
        """Answer the next matching REST call with a per-route 429 (discord.py retries)."""
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": False,
        }
        failure = _Failure(
            method.upper(), re.compile(path_regex), 429, body, _limit_headers(retry_after), 1
        )
        self._failures.append(failure)

    def calls_to(self, method: str, path_regex: str) -> list[RestCall]:
        """Recorded calls whose method matches and whose path matches the regex fully."""
        pattern = re.compile(path_regex)
        return [c for c in self.calls if c.method == method and pattern.fullmatch(c.path)]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked after every REST call."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    # -- gateway -----------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json({"op": OP_HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            await self._on_frame(ws, request.transport, frame)
            if ws.closed:
                break
        return ws

    async def _on_frame(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, frame: JsonDict
    ) -> None:
        op = frame.get("op")
        if op == OP_HEARTBEAT:
            await ws.send_json({"op": OP_HEARTBEAT_ACK})
        elif op == OP_IDENTIFY:
            await self._identify(ws, transport, frame["d"])
        elif op == OP_RESUME:
            await self._resume(ws, transport, frame["d"])

    async def _shard_refused(self, ws: web.WebSocketResponse, data: JsonDict) -> int | None:
        """The shard an IDENTIFY asks for, or None after closing a bad one as Discord does."""
        asked = data.get("shard")
        if asked is None:
            if self.shard_count > 1:
                await ws.close(code=CLOSE_SHARDING_REQUIRED, message=b"Sharding required.")
                return None
            return 0
        shard, count = int(asked[0]), int(asked[1])
        if count != self.shard_count or not 0 <= shard < count:
            await ws.close(code=CLOSE_INVALID_SHARD, message=b"Invalid shard.")
            return None
        return shard

    async def _identify(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, data: JsonDict
    ) -> None:
        self.identifies.append(data)
        if data.get("token") != self.gateway_token:
            await ws.close(code=CLOSE_AUTH_FAILED, message=b"Authentication failed.")
            return
        asked_privileged = int(data.get("intents", 0)) & PRIVILEGED_INTENTS
        if asked_privileged & ~self.allowed_intents:
            await ws.close(code=CLOSE_DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return
        shard = await self._shard_refused(ws, data)
        if shard is None:
            return
        link = self._links[shard]
        link.ws, link.transport = ws, transport
        link.session = _Session(session_id=f"session-{next(self._ids)}")
        guilds = [g for gid, g in self.guilds.items() if self.shard_of({"guild_id": gid}) == shard]
        ready = {
            "v": 10,
            "user": dict(self.bot, verified=True, mfa_enabled=False, flags=0),
            "session_id": link.session.session_id,
            "resume_gateway_url": self.gateway_url,
            "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
            "application": {"id": self.app_id, "flags": self.app_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "shard": [shard, self.shard_count],
        }
        await self._send_dispatch(link, {"op": OP_DISPATCH, "t": "READY", "d": ready})
        for data_ in guilds:
            await self._send_dispatch(link, {"op": OP_DISPATCH, "t": "GUILD_CREATE", "d": data_})
        await self._went_live(shard, link)

    async def _resume(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, data: JsonDict
    ) -> None:
        self.resumes.append(data)
        if data.get("token") != self.gateway_token:
            await ws.close(code=CLOSE_AUTH_FAILED, message=b"Authentication failed.")
            return
        found = [
            (shard, link)
            for shard, link in self._links.items()
            if link.session is not None and link.session.session_id == data.get("session_id")
        ]
        if not found:
            await ws.send_json({"op": OP_INVALID_SESSION, "d": False})
            return
        shard, link = found[0]
        assert link.session is not None
        link.ws, link.transport = ws, transport
        last = int(data.get("seq") or 0)
        for frame in list(link.session.sent):
            if frame["s"] > last:
                await ws.send_json(frame)
        await self._send_dispatch(link, {"op": OP_DISPATCH, "t": "RESUMED", "d": {}})
        await self._went_live(shard, link)

    async def _went_live(self, shard: int, link: _Link) -> None:
        self._live.add(shard)
        if len(self._live) == self.shard_count:
            self.connected.set()
        pending, link.pending = link.pending, []
        for frame in pending:
            await self._send_dispatch(link, frame)

    def _has_session(self) -> bool:
        return any(link.session is not None for link in self._links.values())

    async def _send_dispatch(self, link: _Link, frame: JsonDict) -> None:
        session = link.session
        assert session is not None and link.ws is not None
        session.seq += 1
        frame = dict(frame, s=session.seq)
        session.sent.append(frame)
        await link.ws.send_json(frame)

    # -- REST --------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        raw = await request.text() if request.can_read_body else ""
        body = json.loads(raw) if raw else None
        status, payload, headers = await self._answer(request, path, body)
        call = RestCall(request.method, path, body, time.monotonic(), status, dict(request.query))
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()
        if status == 204:
            return web.Response(status=204, headers=headers)
        # discord.py only parses JSON when the content type is exactly application/json.
        headers = dict(headers, **{"Content-Type": "application/json"})
        return web.Response(status=status, body=json.dumps(payload).encode(), headers=headers)

    async def _answer(self, request: web.Request, path: str, body: Any) -> Reply:
        injected = self._injected(request.method, path)
        if injected is not None:
            return injected.status, injected.body, injected.headers
        webhook = path.startswith(("/interactions/", "/webhooks/"))
        if not webhook and request.headers.get("Authorization") != f"Bot {self.token}":
            return 401, {"message": "401: Unauthorized", "code": 0}, {}
        for method, pattern, handler in self._routes():
            if method == request.method and (m := re.fullmatch(pattern, path)):
                return await handler(body, *m.groups())
        return 404, {"message": "404: Not Found", "code": 0}, {}

    def _routes(self) -> list[tuple[str, str, Handler]]:
        cid = r"/channels/(\d+)"
        hook = r"/webhooks/(\d+)/([^/]+)"
        return [
            ("GET", r"/users/@me", self._me),
            ("GET", r"/oauth2/applications/@me", self._app_info),
            ("GET", r"/gateway", self._gateway_info),
            ("GET", r"/gateway/bot", self._gateway_info),
            ("PUT", r"/applications/(\d+)/commands", self._put_commands),
            ("POST", cid + r"/messages", self._create_message),
            ("PATCH", cid + r"/messages/(\d+)", self._edit_message),
            ("POST", cid + r"/typing", self._typing),
            ("POST", cid + r"/messages/(\d+)/threads", self._thread_from_message),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._interaction_callback),
            ("POST", hook, self._followup),
            ("PATCH", hook + r"/messages/(@original|\d+)", self._edit_webhook_message),
        ]

    def _injected(self, method: str, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.method == method and failure.pattern.fullmatch(path):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    async def _me(self, body: Any) -> Reply:
        return 200, dict(self.bot, verified=True, mfa_enabled=False, flags=0), {}

    async def _app_info(self, body: Any) -> Reply:
        info = {
            "id": self.app_id,
            "name": self.bot["username"],
            "icon": None,
            "description": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": user("900000000000000099", "owner"),
            "verify_key": "0" * 64,
            "flags": self.app_flags,
            "team": None,
            "summary": "",
        }
        return 200, info, {}

    async def _gateway_info(self, body: Any) -> Reply:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        shards = self.shard_count
        return 200, {"url": self.gateway_url, "shards": shards, "session_start_limit": limit}, {}

    async def _put_commands(self, body: Any, app_id: str) -> Reply:
        self.commands = [
            dict(cmd, id=self.new_id(), application_id=app_id, version=self.new_id())
            for cmd in body or []
        ]
        return 200, self.commands, {}

    def _window(self, channel_id: str) -> tuple[int, float] | None:
        """Count a write in the channel's current window: (writes so far, seconds left).

        Like Discord's per-channel bucket: a fixed window opens with the first write,
        holds ``count`` writes, and resets when it ends. None when no limit is set.
        """
        if self.channel_write_limit is None:
            return None
        _, window = self.channel_write_limit
        now = time.monotonic()
        opened, used = self._windows.get(channel_id, (now, 0))
        if now - opened >= window:
            opened, used = now, 0
        used += 1
        self._windows[channel_id] = (opened, used)
        # Rounded up to the millisecond the headers carry: a client that waits exactly
        # the time it was told must find the window reset (rounding down let a fast
        # client arrive a fraction of a millisecond early and get a 429).
        return used, math.ceil((window - (now - opened)) * 1000) / 1000

    def _limited(self, channel_id: str) -> tuple[Reply | None, dict[str, str]]:
        """A 429 when the window is full, else the headers Discord puts on a write."""
        state = self._window(channel_id)
        if state is None:
            return None, {}
        used, left = state
        count, _ = self.channel_write_limit or (0, 0.0)
        if used > count:
            body = {"message": "You are being rate limited.", "retry_after": left, "global": False}
            return (429, body, _limit_headers(left)), {}
        headers = {
            "X-RateLimit-Limit": str(count),
            "X-RateLimit-Remaining": str(count - used),
            "X-RateLimit-Reset": f"{time.time() + left:.3f}",
            "X-RateLimit-Reset-After": f"{left:.3f}",
            "X-RateLimit-Bucket": "channel-message-writes",
        }
        return None, headers

    def _bot_message(self, channel_id: str, body: JsonDict) -> JsonDict:
        ch = self.channels.get(channel_id, {})
        data: JsonDict = {
            "id": self.new_id(),
            "channel_id": channel_id,
            "author": self.bot,
            "content": body.get("content") or "",
            "timestamp": iso(time.time()),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": body.get("flags") or 0,
            "components": body.get("components") or [],
        }
        if "guild_id" in ch:
            data["guild_id"] = ch["guild_id"]
        ref = body.get("message_reference")
        if ref:
            data["type"] = 19
            data["message_reference"] = dict(ref, channel_id=ref.get("channel_id", channel_id))
            data["referenced_message"] = self.messages.get(str(ref["message_id"]))
        return data

    async def _create_message(self, body: Any, channel_id: str) -> Reply:
        if channel_id not in self.channels:
            return 404, {"message": "Unknown Channel", "code": 10003}, {}
        if (rejected := _too_long(body)) is not None:
            return rejected
        limited, headers = self._limited(channel_id)
        if limited is not None:
            return limited
        data = self._bot_message(channel_id, body or {})
        self.messages[data["id"]] = data
        self.posted.append(data["id"])
        if self.echo_own_messages and self._has_session():
            echo = dict(data)
            if "guild_id" in echo:
                echo["member"] = {k: v for k, v in member(self.bot).items() if k != "user"}
            await self.dispatch("MESSAGE_CREATE", echo)
        return 200, data, headers

    async def _edit_message(self, body: Any, channel_id: str, message_id: str) -> Reply:
        found = self.messages.get(message_id)
        if found is None or found["channel_id"] != channel_id:
            return 404, {"message": "Unknown Message", "code": 10008}, {}
        if found["author"]["id"] != self.bot["id"]:
            return (
                403,
                {"message": "Cannot edit a message authored by another user", "code": 50005},
                {},
            )
        if (rejected := _too_long(body)) is not None:
            return rejected
        limited, headers = self._limited(channel_id)
        if limited is not None:
            return limited
        if body and "content" in body:
            found["content"] = body["content"]
        found["edited_timestamp"] = iso(time.time())
        return 200, found, headers

    async def _typing(self, body: Any, channel_id: str) -> Reply:
        if channel_id not in self.channels:
            return 404, {"message": "Unknown Channel", "code": 10003}, {}
        return 204, None, {}

    async def _thread_from_message(self, body: Any, channel_id: str, message_id: str) -> Reply:
        parent = self.channels.get(channel_id)
        if parent is None or "guild_id" not in parent:
            return 404, {"message": "Unknown Channel", "code": 10003}, {}
        # A thread started from a message takes the message's id.
        thread = thread_channel(
            message_id, parent["guild_id"], channel_id, body["name"], owner_id=self.bot["id"]
        )
        thread["thread_metadata"]["auto_archive_duration"] = body.get("auto_archive_duration", 1440)
        self.channels[message_id] = thread
        self.guilds[parent["guild_id"]]["threads"].append(thread)
        if self._has_session():
            await self.dispatch("THREAD_CREATE", dict(thread, newly_created=True))
        return 201, thread, {}

    def _ephemeral_message(self, body: JsonDict) -> JsonDict:
        data = self._bot_message("0", body)
        data["webhook_id"] = self.app_id
        self.messages[data["id"]] = data
        return data

    async def _interaction_callback(self, body: Any, interaction_id: str, token: str) -> Reply:
        kind = body.get("type")
        inner = body.get("data") or {}
        pressed = self._pressed.pop(token, None)
        if kind == UPDATE_MESSAGE and pressed is not None:  # a button press edits its message
            target = self.messages[pressed]
            target.update({k: inner[k] for k in ("content", "components") if k in inner})
            return 204, None, {}
        if (rejected := _too_long(inner)) is not None:
            return rejected
        message = self._ephemeral_message(inner)
        self.messages[f"original:{token}"] = message
        ephemeral = bool((inner.get("flags") or 0) & EPHEMERAL_FLAG)
        response = {
            "interaction": {
                "id": interaction_id,
                "type": 2,
                "response_message_id": message["id"],
                "response_message_loading": kind == 5,
                "response_message_ephemeral": ephemeral,
            },
            "resource": {"type": kind, "message": message},
        }
        return 200, response, {}

    async def _followup(self, body: Any, app_id: str, token: str) -> Reply:
        return _too_long(body) or (200, self._ephemeral_message(body or {}), {})

    async def _edit_webhook_message(
        self, body: Any, app_id: str, token: str, message_id: str
    ) -> Reply:
        if (rejected := _too_long(body)) is not None:
            return rejected
        key = f"original:{token}" if message_id == "@original" else message_id
        found = self.messages.get(key)
        if found is None:
            return 404, {"message": "Unknown Message", "code": 10008}, {}
        if body and "content" in body:
            found["content"] = body["content"]
        found["edited_timestamp"] = iso(time.time())
        return 200, found, {}


def _too_long(body: Any) -> Reply | None:
    """Discord's answer to content over 2,000 characters, or None if it fits."""
    content = (body or {}).get("content") or ""
    if len(content) <= MAX_CONTENT:
        return None
    error = {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
    payload = {
        "message": "Invalid Form Body",
        "code": 50035,
        "errors": {"content": {"_errors": [error]}},
    }
    return 400, payload, {}


def _limit_headers(retry_after: float) -> dict[str, str]:
    """The headers of a per-route 429 (discord.py needs ``Via`` to trust it)."""
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
        "X-RateLimit-Bucket": "fake-bucket",
        "X-RateLimit-Scope": "user",
        "Retry-After": str(max(1, round(retry_after))),
        "Via": "1.1 google",
    }


@contextlib.contextmanager
def pointed_at(fake: FakeDiscord) -> Iterator[None]:
    """Make discord.py's REST and gateway URLs point at ``fake`` (restored on exit)."""
    import discord.gateway
    import discord.http
    import yarl

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
