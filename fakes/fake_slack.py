"""A fake Slack on loopback: the Web API, the Socket Mode websocket, signed HTTP events.

The real ``slack_sdk`` / ``slack_bolt`` talk to it: point ``AsyncWebClient``
at :attr:`FakeSlack.api_url`; ``apps.connections.open`` hands out
``ws://127.0.0.1:PORT/socket``. Every Web API call is recorded (method, args,
token, time) and the messages the bot posted are kept per channel, so tests
can read a thread the way a person would see it.

Switches: :attr:`stream_error` / :attr:`status_error` refuse native streaming
or the status line with that error code; :meth:`rate_limit` answers the next
calls of a method with 429 and an integer ``Retry-After``; :meth:`fail` makes
the next calls of a method return ``{"ok": false, "error": ...}``.

:attr:`limits` (``fakes/slack_limits.py``, on by default) makes the fake
enforce Slack's documented rate limits, per workspace and method and per channel for posts,
answering 429 + Retry-After past them (:attr:`limited` counts those). A call's
workspace is its channel's team in :attr:`channel_teams`, else :attr:`team_id`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from fakes.served import Served
from fakes.slack_limits import DOCUMENTED, LimitBook, SlackLimits

HOST = "127.0.0.1"
SIGN_IN_PAGE = "<!DOCTYPE html><html><body>Sign in to Slack</body></html>"
MARKDOWN_LIMIT = 12_000  # Slack's documented limit for markdown_text
BASE_TS = 1_700_000_000
WAIT_LIMIT_S = 5.0  # longest a test waits for something to happen
JsonDict = dict[str, Any]
Handler = Callable[[JsonDict], JsonDict]


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One Web API request as the fake received it."""

    method: str
    args: JsonDict
    token: str | None
    at: float  # time.monotonic() on arrival
    status: int  # HTTP status we answered with
    ok: bool | None  # the "ok" of our JSON answer (None for a 429)


@dataclass(slots=True)
class Posted:
    """A message the bot posted, as it currently reads."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    streaming: bool = False
    deleted: bool = False
    updates: int = 0
    blocks: list[JsonDict] = field(default_factory=list)  # Block Kit, as last sent


@dataclass(slots=True)
class _Fault:
    status: int = 200
    error: str | None = None
    retry_after: int = 0
    times: int = 1
    team: str | None = None  # only calls in this workspace


@dataclass(slots=True)
class FakeSlack(Served):
    """Slack's side of a one-workspace app install."""

    bot_token: str = "xoxb-fake-bot-token"
    app_token: str = "xapp-fake-app-token"
    signing_secret: str = "fake-signing-secret"
    team_id: str = "T0FAKE"
    team_name: str = "Fake Team"
    bot_user_id: str = "U0BOT"
    bot_id: str = "B0BOT"
    bot_name: str = "chatbridge"
    users: dict[str, JsonDict] = field(default_factory=dict)
    stream_error: str | None = None  # e.g. "not_allowed": refuse chat.startStream
    status_error: str | None = None  # e.g. "missing_scope": refuse setStatus
    calls: list[ApiCall] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)
    calls_at_ack: dict[str, int] = field(default_factory=dict)  # envelope -> len(calls) then
    connections: int = 0  # websocket connections accepted so far
    statuses: list[JsonDict] = field(default_factory=list)
    _messages: dict[str, Posted] = field(default_factory=dict)
    _faults: dict[str, list[_Fault]] = field(default_factory=lambda: defaultdict(list))
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition | None = None
    _runner: web.AppRunner | None = None
    port: int = 0
    limits: SlackLimits | None = DOCUMENTED  # Slack's rate limits (None: no limits)
    channel_teams: dict[str, str] = field(default_factory=dict)  # channel -> workspace
    limited: int = 0  # 429s sent because a limit was reached (not scripted ones)
    _book: LimitBook | None = None
    files: dict[str, tuple[JsonDict, bytes]] = field(default_factory=dict)  # id -> (info, bytes)
    file_downloads: list[tuple[str, bool]] = field(default_factory=list)  # (id, authorised)
    refuse_files: bool = False  # answer url_private with the sign-in page (no files:read)
    _spread: itertools.count[int] = field(default_factory=itertools.count)  # next socket
    acks_by_connection: Counter[int] = field(default_factory=Counter)  # connection no. -> acks
    _acked: set[str] = field(default_factory=set)  # acks as a set: many tests wait at once
    _retiring: set[int] = field(default_factory=set)  # ids of sockets asked to reconnect
    live_connections: set[int] = field(default_factory=set)  # numbers of open connections
    acked_events: dict[str, int] = field(default_factory=dict)  # event_id -> connection no.
    _event_of: dict[str, str] = field(default_factory=dict)  # envelope_id -> event_id

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 at a free port."""
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/files-pri/{file}/{name}", self._file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port)
        await site.start()
        self.port = next(a[1] for a in self._runner.addresses if isinstance(a, tuple))

    async def close(self) -> None:
        """Close sockets and stop listening."""
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_url(self) -> str:
        """The base URL for ``AsyncWebClient(base_url=...)``."""
        return f"http://{HOST}:{self.port}/api/"

    # -- scripting ----------------------------------------------------------

    def rate_limit(
        self, method: str, *, times: int = 1, retry_after: int = 0, team: str | None = None
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (in workspace ``team``) with 429."""
        fault = _Fault(status=429, retry_after=retry_after, times=times, team=team)
        self._faults[method].append(fault)

    def team_of(self, args: JsonDict) -> str:
        """The workspace a call acts in: its channel's team."""
        channel = str(args.get("channel") or args.get("channel_id") or "")
        return self.channel_teams.get(channel, self.team_id)

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ok=false and ``error``."""
        self._faults[method].append(_Fault(error=error, times=times))

    def add_user(self, user_id: str, display_name: str, real_name: str = "") -> None:
        """Make users.info know a person."""
        self.users[user_id] = {
            "id": user_id,
            "name": display_name.lower().replace(" ", "."),
            "real_name": real_name or display_name,
            "profile": {"display_name": display_name, "real_name": real_name or display_name},
        }

    # -- what happened ------------------------------------------------------

    def calls_to(self, *methods: str) -> list[ApiCall]:
        """Recorded calls of the given methods, in arrival order."""
        return [c for c in self.calls if c.method in methods]

    def posted(self, channel: str | None = None, thread_ts: str | None = None) -> list[Posted]:
        """Messages the bot posted (not deleted), oldest first, optionally filtered."""
        return [
            m
            for m in self._messages.values()
            if not m.deleted
            and (channel is None or m.channel == channel)
            and (thread_ts is None or m.thread_ts == thread_ts)
        ]

    def texts(self, channel: str | None = None, thread_ts: str | None = None) -> list[str]:
        """The current texts of :meth:`posted`."""
        return [m.text for m in self.posted(channel, thread_ts)]

    async def wait_until(self, predicate: Callable[[], bool], within: float = WAIT_LIMIT_S) -> None:
        """Wait until ``predicate()`` holds (re-checked on every call, ack or connect).

        Gives up with TimeoutError after ``within`` seconds, so a broken test cannot hang.
        """
        assert self._changed is not None, "start() first"
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    # -- events (what Slack sends) ------------------------------------------

    def next_ts(self) -> str:
        """A fresh message ts, increasing like Slack's."""
        n = next(self._ts)
        return f"{BASE_TS + n}.{n:06d}"

    def event_body(
        self, event: JsonDict, *, event_id: str | None = None, team_id: str | None = None
    ) -> JsonDict:
        """Wrap an event the way the Events API delivers it."""
        return {
            "token": "verification-token-unused",
            "team_id": team_id or self.team_id,
            "api_app_id": "A0FAKE",
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:12].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {"team_id": team_id or self.team_id, "user_id": self.bot_user_id, "is_bot": True}
            ],
        }

    def message_event(
        self,
        text: str,
        *,
        user: str = "U0ALICE",
        channel: str = "C0GENERAL",
        channel_type: str = "channel",
        kind: str = "message",
        thread_ts: str | None = None,
        ts: str | None = None,
        **extra: Any,
    ) -> JsonDict:
        """A user's message event (``kind="app_mention"`` for the mention twin)."""
        event: JsonDict = {
            "type": kind,
            "user": user,
            "text": text,
            "ts": ts or self.next_ts(),
            "channel": channel,
            "team": self.team_id,
        }
        if kind == "message":
            event["channel_type"] = channel_type
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
        event["event_ts"] = event["ts"]
        event.update(extra)
        return event

    def add_file(self, name: str, data: bytes, mimetype: str = "") -> JsonDict:
        """A file object as message events carry it; its ``url_private`` answers only
        with the bot token, as Slack's does (``files.info`` returns the same object)."""
        file_id = f"F{len(self.files) + 1:08d}"
        url = f"http://{HOST}:{self.port}/files-pri/{self.team_id}-{file_id}/{name}"
        info: JsonDict = {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "size": len(data),
            "url_private": url,
            "url_private_download": url + "?download=1",
        }
        self.files[file_id] = (info, data)
        return info

    async def _file(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file"].rsplit("-", 1)[-1]
        found = self.files.get(file_id)
        authorised = _bearer(request) == self.bot_token
        self.file_downloads.append((file_id, authorised))
        if found is None:
            return web.Response(status=404)
        if not authorised or self.refuse_files:  # Slack sends its sign-in page, not the file
            return web.Response(text=SIGN_IN_PAGE, content_type="text/html")
        return web.Response(body=found[1], content_type="application/octet-stream")

    def _files_info(self, args: JsonDict) -> JsonDict:
        found = self.files.get(str(args.get("file") or ""))
        if found is None:
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "file": found[0]}

    def mention(self, text: str, **kw: Any) -> tuple[JsonDict, JsonDict]:
        """The two bodies Slack sends for a channel message mentioning the bot.

        ``text`` gets ``<@BOT>`` in front; both share one ts, like the real thing.
        """
        full = f"<@{self.bot_user_id}> {text}"
        ts = kw.pop("ts", None) or self.next_ts()
        as_mention = self.message_event(full, kind="app_mention", ts=ts, **kw)
        as_message = self.message_event(full, kind="message", ts=ts, **kw)
        return self.event_body(as_mention), self.event_body(as_message)

    # Socket Mode

    async def push(
        self,
        body: JsonDict,
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
        within: float = WAIT_LIMIT_S,
    ) -> str:
        """Send an events_api envelope to the connected app; return its envelope id.

        With several connections open (several instances, or one app's several
        sockets), envelopes go to them in turn, as Slack spreads an app's events."""
        await self.wait_until(lambda: any(not ws.closed for ws in self._sockets), within)
        ws = self._next_socket()
        envelope_id = envelope_id or str(uuid.uuid4())
        self._event_of[envelope_id] = str(body.get("event_id"))
        envelope = {
            "envelope_id": envelope_id,
            "type": "events_api",
            "payload": body,
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        await ws.send_str(json.dumps(envelope))
        return envelope_id

    def block_action(self, posted: Posted, action_id: str, *, user: str = "U0ALICE") -> JsonDict:
        """A block_actions payload: ``user`` pressed the button ``action_id`` of ``posted``."""
        return {
            "type": "block_actions",
            "team": {"id": self.team_id, "domain": "fake"},
            "user": {"id": user, "team_id": self.team_id},
            "api_app_id": "A0FAKE",
            "token": "verification-token-unused",
            "trigger_id": uuid.uuid4().hex,
            "channel": {"id": posted.channel, "name": "general"},
            "container": {"type": "message", "message_ts": posted.ts, "channel_id": posted.channel},
            "message": {
                "type": "message",
                "ts": posted.ts,
                "text": posted.text,
                "blocks": posted.blocks,
            },
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b1",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }

    async def press(self, posted: Posted, action_id: str, *, user: str = "U0ALICE") -> str:
        """Press a button over Socket Mode (an ``interactive`` envelope); its envelope id."""
        await self.wait_until(lambda: any(not ws.closed for ws in self._sockets))
        ws = next(ws for ws in reversed(self._sockets) if not ws.closed)
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": "interactive",
            "payload": self.block_action(posted, action_id, user=user),
            "accepts_response_payload": False,
        }
        await ws.send_str(json.dumps(envelope))
        return envelope_id

    def _next_socket(self) -> web.WebSocketResponse:
        """The next open connection in turn; one asked to reconnect gets nothing
        while another is open (Slack sends to the connection that replaces it)."""
        live = [ws for ws in self._sockets if not ws.closed]
        staying = [ws for ws in live if id(ws) not in self._retiring] or live
        return staying[next(self._spread) % len(staying)]

    async def push_until_acked(
        self, body: JsonDict, *, ack_within: float = WAIT_LIMIT_S, attempts: int = 4
    ) -> int:
        """Push ``body``; while it is not acknowledged within ``ack_within``, push it
        again (``retry_attempt`` + 1, reason ``timeout``) on the next connection, as
        Slack retries an unacknowledged event. How many envelopes were sent."""
        for attempt in range(attempts):
            reason = "timeout" if attempt else ""
            try:
                envelope = await self.push(body, retry_attempt=attempt, retry_reason=reason)
                await self.wait_ack(envelope, ack_within)
            except (TimeoutError, ConnectionResetError):  # a connection closing under it
                continue
            return attempt + 1
        raise TimeoutError(f"event {body.get('event_id')} never acknowledged")

    async def wait_ack(self, envelope_id: str, within: float = WAIT_LIMIT_S) -> None:
        """Wait until the app acknowledged an envelope."""
        await self.wait_until(lambda: envelope_id in self._acked, within)

    async def drop_sockets(self, *, graceful: bool = False) -> None:
        """Close every websocket (or ask the app to reconnect, like Slack's refresh)."""
        for ws in list(self._sockets):
            if graceful:
                self._retiring.add(id(ws))
                await ws.send_str(json.dumps({"type": "disconnect", "reason": "refresh_requested"}))
            else:
                await ws.close()

    @property
    def open_sockets(self) -> int:
        """Websockets the app holds open right now (0 once it stopped listening)."""
        return sum(1 for ws in self._sockets if not ws.closed)

    # HTTP mode

    def sign(self, body: str, timestamp: int, secret: str | None = None) -> str:
        """Slack's v0 request signature."""
        base = f"v0:{timestamp}:{body}".encode()
        key = (secret if secret is not None else self.signing_secret).encode()
        return "v0=" + hmac.new(key, base, hashlib.sha256).hexdigest()

    async def deliver(
        self,
        url: str,
        body: JsonDict,
        *,
        retry_num: int | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> tuple[int, str]:
        """POST a signed Events API request to the app; return (status, body)."""
        raw = json.dumps(body)
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": self.sign(raw, stamp, secret),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.post(url, data=raw, headers=headers) as resp,
        ):
            return resp.status, await resp.text()

    # -- server side --------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _read_args(request)
        token = _bearer(request) or args.pop("token", None)
        fault = self._take_fault(method, self.team_of(args))
        if fault is None and self.limits is not None:
            channel = str(args.get("channel") or "") or None
            wait = self._limit_book().take(method, self.team_of(args), channel)
            if wait is not None:
                self.limited += 1
                fault = _Fault(status=429, retry_after=wait)
        if fault is not None and fault.status == 429:
            await self._record(method, args, token, 429, None)
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(fault.retry_after)},
            )
        if fault is not None:
            answer: JsonDict = {"ok": False, "error": fault.error}
        else:
            answer = self._answer(method, args, token)
        await self._record(method, args, token, 200, bool(answer.get("ok")))
        return web.json_response(answer)

    def _answer(self, method: str, args: JsonDict, token: str | None) -> JsonDict:
        if not token:
            return {"ok": False, "error": "not_authed"}
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != expected:
            return {"ok": False, "error": "invalid_auth"}
        handler = self._handlers().get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        return handler(args)

    def _handlers(self) -> dict[str, Handler]:
        return {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "assistant.threads.setStatus": self._set_status,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "files.info": self._files_info,
        }

    def _auth_test(self, args: JsonDict) -> JsonDict:
        return {
            "ok": True,
            "url": "https://fake.slack.test/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _connections_open(self, args: JsonDict) -> JsonDict:
        return {"ok": True, "url": f"ws://{HOST}:{self.port}/socket?ticket={uuid.uuid4().hex}"}

    def _post_message(self, args: JsonDict) -> JsonDict:
        text, problem = _message_text(args)
        if problem:
            return {"ok": False, "error": problem}
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        thread = args.get("thread_ts") or None
        posted = Posted(channel, self.next_ts(), str(thread) if thread else None, text)
        posted.blocks = _blocks(args)
        self._messages[posted.ts] = posted
        return {"ok": True, "channel": channel, "ts": posted.ts, "message": {"text": text}}

    def _update(self, args: JsonDict) -> JsonDict:
        posted = self._find(args)
        if posted is None:
            return {"ok": False, "error": "message_not_found"}
        text, problem = _message_text(args)
        if problem:
            return {"ok": False, "error": problem}
        posted.text = text
        posted.updates += 1
        if "blocks" in args:  # left out: Slack keeps the message's blocks
            posted.blocks = _blocks(args)
        return {"ok": True, "channel": posted.channel, "ts": posted.ts, "text": text}

    def _delete(self, args: JsonDict) -> JsonDict:
        posted = self._find(args)
        if posted is None:
            return {"ok": False, "error": "message_not_found"}
        posted.deleted = True
        return {"ok": True, "channel": posted.channel, "ts": posted.ts}

    def _start_stream(self, args: JsonDict) -> JsonDict:
        if self.stream_error:
            return {"ok": False, "error": self.stream_error}
        channel, thread = str(args.get("channel") or ""), args.get("thread_ts")
        if not channel or not thread:
            return {"ok": False, "error": "invalid_arguments"}
        text, problem = _stream_text(args)
        if problem:
            return {"ok": False, "error": problem}
        posted = Posted(channel, self.next_ts(), str(thread), text, streaming=True)
        self._messages[posted.ts] = posted
        return {"ok": True, "channel": channel, "ts": posted.ts}

    def _append_stream(self, args: JsonDict) -> JsonDict:
        posted = self._find(args)
        if posted is None:
            return {"ok": False, "error": "message_not_found"}
        if not posted.streaming:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        text, problem = _stream_text(args)
        if problem:
            return {"ok": False, "error": problem}
        posted.text += text
        return {"ok": True, "channel": posted.channel, "ts": posted.ts}

    def _stop_stream(self, args: JsonDict) -> JsonDict:
        result = self._append_stream(args)
        if result.get("ok"):
            self._messages[str(args["ts"])].streaming = False
        return result

    def _set_status(self, args: JsonDict) -> JsonDict:
        if self.status_error:
            return {"ok": False, "error": self.status_error}
        if not args.get("channel_id") or not args.get("thread_ts"):
            return {"ok": False, "error": "invalid_arguments"}
        self.statuses.append(dict(args))
        return {"ok": True}

    def _users_info(self, args: JsonDict) -> JsonDict:
        user = self.users.get(str(args.get("user") or ""))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}

    def _conversations_info(self, args: JsonDict) -> JsonDict:
        channel = str(args.get("channel") or "")
        return {"ok": True, "channel": {"id": channel, "name": channel.lower()}}

    def _find(self, args: JsonDict) -> Posted | None:
        posted = self._messages.get(str(args.get("ts") or ""))
        if posted is None or posted.deleted or posted.channel != args.get("channel"):
            return None
        return posted

    def _take_fault(self, method: str, team: str) -> _Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = next((f for f in queue if f.team in (None, team)), None)
        if fault is None:
            return None
        fault.times -= 1
        if fault.times <= 0:
            queue.remove(fault)
        return fault

    def _limit_book(self) -> LimitBook:
        assert self.limits is not None
        if self._book is None or self._book.limits is not self.limits:
            self._book = LimitBook(self.limits)
        return self._book

    async def _record(
        self, method: str, args: JsonDict, token: str | None, status: int, ok: bool | None
    ) -> None:
        self.calls.append(ApiCall(method, args, token, time.monotonic(), status, ok))
        await self._notify()

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.connections += 1
        number = self.connections
        self.live_connections.add(number)
        await ws.send_str(json.dumps(_hello()))
        await self._notify()
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(frame.data)
                if isinstance(data, Mapping) and data.get("envelope_id"):
                    self.acks.append(str(data["envelope_id"]))
                    self._acked.add(str(data["envelope_id"]))
                    self.acks_by_connection[number] += 1
                    event = self._event_of.pop(str(data["envelope_id"]), None)
                    if event is not None:
                        self.acked_events.setdefault(event, number)
                    self.calls_at_ack[str(data["envelope_id"])] = len(self.calls)
                    await self._notify()
        finally:
            self._sockets.remove(ws)
            self._retiring.discard(id(ws))
            self.live_connections.discard(number)
            await self._notify()
        return ws


async def _read_args(request: web.Request) -> JsonDict:
    """Arguments as slack_sdk sends them: query string, form body or JSON body."""
    args: JsonDict = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return args
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, Mapping):
            args.update(body)
    else:
        form = await request.post()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


def _blocks(args: JsonDict) -> list[JsonDict]:
    """Blocks as slack_sdk sends them: a list in a JSON body, JSON text in a form."""
    blocks = args.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return list(blocks) if isinstance(blocks, list) else []


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    return header.removeprefix("Bearer ").strip() or None


def _message_text(args: JsonDict) -> tuple[str, str | None]:
    markdown = args.get("markdown_text")
    if markdown is not None and (args.get("text") or args.get("blocks")):
        return "", "markdown_text_conflict"
    text = str(markdown if markdown is not None else args.get("text") or "")
    if not text:
        return "", "no_text"
    if markdown is not None and len(text) > MARKDOWN_LIMIT:
        return "", "msg_too_long"
    return text, None


def _stream_text(args: JsonDict) -> tuple[str, str | None]:
    pieces = [str(args.get("markdown_text") or "")]
    chunks = args.get("chunks")
    if isinstance(chunks, str):
        chunks = json.loads(chunks)
    for chunk in chunks or []:
        if isinstance(chunk, Mapping) and chunk.get("type") == "markdown_text":
            pieces.append(str(chunk.get("text") or ""))
    text = "".join(pieces)
    if len(text) > MARKDOWN_LIMIT:
        return "", "msg_too_long"
    return text, None


def _hello() -> JsonDict:
    return {
        "type": "hello",
        "num_connections": 1,
        "debug_info": {"host": "fake-slack", "approximate_connection_time": 3600},
        "connection_info": {"app_id": "A0FAKE"},
    }
