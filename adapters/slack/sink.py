"""Posting answers into one Slack conversation (a channel thread or a DM).

Text goes out as ``markdown_text`` so Slack renders standard Markdown itself.
Native streaming (chat.startStream/appendStream/stopStream) and the assistant
status line are newer Slack features a workspace may refuse; each refusal is
remembered per team in :class:`TeamFallbacks`, so later answers go straight to
chat.postMessage + chat.update and a placeholder message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.attachments import DownloadFailed, download
from bot.errors import PlatformRefused
from bot.events import EVENTS
from bot.pacing import Pace, Pacer
from bot.types import Attachment, NativeStreamUnavailable, PlatformLimits

from .approval import question_blocks
from .mentions import neutralise, split_ready
from .pacing import (
    METHOD_FOR_OP,
    POST,
    RATE_LIMIT_RETRIES,
    STATUS,
    UPDATE,
    SlackPaces,
    retry_after,
)

log = logging.getLogger(__name__)

# Slack documents 12,000 characters for markdown_text. The core splits at
# max_len and may add a closing/reopening code fence to a part, so we keep
# 1,000 characters of headroom rather than posting right at the edge.
MARKDOWN_MAX_LEN = 11_000
# Only for a sink made without ``paces``: then every write shares one bucket per
# channel. With paces (the adapter always passes them) see adapters/slack/pacing.py.
EDIT_BURST = 3
EDIT_RATE = 0.5
MIN_EDIT_INTERVAL = 1.0
# Hosts that serve url_private (the bot token is sent to these only, and to the API's).
SLACK_FILE_HOSTS = (".slack.com", ".slack-edge.com", ".slack-files.com")
HTML_STARTS = (b"<!doctype html", b"<html")
# Slack may clear the assistant status line on its own after a while (about two
# minutes); a model still thinking by then gets it again (a placeholder simply stays).
STATUS_REFRESH_S = 90.0
# Error codes meaning "this feature is not available here", as opposed to a
# broken request. Anything else is raised so the core reports it.
REFUSAL_ERRORS = frozenset(
    {
        "not_allowed",
        "not_allowed_token_type",
        "missing_scope",
        "no_permission",
        "access_denied",
        "unknown_method",
        "method_not_supported_for_channel_type",
        "feature_not_enabled",
        "team_not_allowed",
        "not_supported",
        "restricted_action",
    }
)


# Errors no retry fixes, and what the operator can do (one log line, no traceback).
FIXED_BY_OPERATOR = {
    "not_in_channel": "invite the bot to the channel (/invite @the-bot)",
    "channel_not_found": "the channel is gone, or private and the bot is not in it",
    "is_archived": "the channel is archived",
    "token_revoked": "the bot token was revoked: reinstall the app, set SLACK_BOT_TOKEN",
    "invalid_auth": "the bot token no longer works: reinstall the app, set SLACK_BOT_TOKEN",
    "account_inactive": "the app was removed from the workspace: reinstall it",
}


@dataclass(slots=True)
class TeamFallbacks:
    """Teams where a newer feature was refused once; shared by every sink."""

    no_stream: set[str] = field(default_factory=set)
    no_status: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class SinkTexts:
    """Words the sink shows before the answer starts."""

    status: str = "is thinking…"  # assistant.threads.setStatus line
    placeholder: str = "…"  # message posted when the status line is refused


def slack_limits(*, streaming: bool, native: bool) -> PlatformLimits:
    """The limits a Slack sink advertises to the core."""
    return PlatformLimits(
        max_len=MARKDOWN_MAX_LEN,
        can_edit=True,
        native_stream=streaming and native,
        edit_burst=EDIT_BURST,
        edit_rate=EDIT_RATE,
        min_edit_interval=MIN_EDIT_INTERVAL,
        stream=streaming,
        typing_refresh_s=STATUS_REFRESH_S,
    )


def is_refusal(exc: SlackApiError) -> bool:
    """Whether Slack refused a feature (rather than failed a request)."""
    error = _error_code(exc)
    return error in REFUSAL_ERRORS or error.endswith(("_not_allowed", "_not_supported"))


class SlackSink:
    """Replies into one channel (and thread) of one workspace."""

    def __init__(
        self,
        client: AsyncWebClient,
        fallbacks: TeamFallbacks,
        *,
        team_id: str,
        channel: str,
        thread_ts: str | None,
        user_id: str,
        streaming: bool,
        texts: SinkTexts | None = None,
        base_limits: PlatformLimits | None = None,
        paces: SlackPaces | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._client = client
        self._fallbacks = fallbacks
        self._team = team_id
        self._channel = channel
        self._thread = thread_ts
        self._user = user_id
        self._texts = texts or SinkTexts()
        self._placeholder: str | None = None
        self._held: dict[str, str] = {}  # per stream: a tail that may become a mention
        # Native streams are replies: Slack needs a thread to attach them to.
        native = thread_ts is not None and team_id not in fallbacks.no_stream
        limits = base_limits or slack_limits(streaming=streaming, native=native)
        self.limits = replace(limits, stream=streaming, native_stream=streaming and native)
        self.pace_key = f"slack:{team_id}:{channel}"
        self._paces = paces
        self._pacer = pacer  # told about 429s, so every writer of that bucket backs off
        self.rate_limited = 0  # 429s this sink's writes received

    def pace_for(self, op: str) -> Pace:
        """The bucket a write of kind ``op`` (bot/delivery.py) takes its token from."""
        method = METHOD_FOR_OP.get(op, POST)
        if op == "send" and self._placeholder is not None:
            method = UPDATE  # the first text replaces the placeholder
        return self._pace(method)

    def _pace(self, method: str) -> Pace:
        if self._paces is None:
            limits = self.limits
            return Pace(self.pace_key, limits.edit_burst, limits.edit_rate)
        return self._paces.pace(self._team, self._channel, method)

    @property
    def channel(self) -> str:
        """The channel this sink posts into."""
        return self._channel

    @property
    def thread_ts(self) -> str | None:
        """The thread this sink replies in (None: top level)."""
        return self._thread

    async def typing(self) -> None:
        """Show the status line, or post a placeholder the answer will replace."""
        if self._thread is not None and self._team not in self._fallbacks.no_status:
            if not self._status_allowed():
                return  # the workspace's status budget is spent: the answer itself will do
            try:
                await self._client.assistant_threads_setStatus(
                    channel_id=self._channel, thread_ts=self._thread, status=self._texts.status
                )
                return
            except SlackApiError as exc:
                if not is_refusal(exc):
                    raise
                log.info(
                    "team %s refused the status line (%s); using a placeholder message",
                    self._team,
                    _error_code(exc),
                )
                self._fallbacks.no_status.add(self._team)
        if self._placeholder is None:
            self._placeholder = await self._post(self._texts.placeholder)

    def _status_allowed(self) -> bool:
        """The status line is optional: shown only when its bucket has a token now."""
        if self._paces is None or self._pacer is None:
            return True
        return self._pacer.try_acquire(*self._pace(STATUS).args)

    async def fetch_file(self, attachment: Attachment, max_bytes: int, timeout_s: float) -> bytes:
        """A file's bytes from ``url_private`` with the bot token (asked from files.info
        when the event had no URL). The token goes to Slack's hosts only."""
        url = attachment.url
        if not url:
            try:
                response = await self._client.files_info(file=attachment.file_id)
            except SlackApiError as exc:
                raise DownloadFailed(f"files.info: {_error_code(exc)}") from exc
            info = response.get("file") or {}
            url = str(info.get("url_private_download") or info.get("url_private") or "")
        host = urlsplit(url).hostname or ""
        api_host = urlsplit(self._client.base_url).hostname or ""
        if not (host == api_host or host.endswith(SLACK_FILE_HOSTS)):
            raise DownloadFailed(f"not a Slack file host: {host or '-'}")
        headers = {"Authorization": f"Bearer {self._client.token}"}
        data = await download(url, headers, max_bytes, timeout_s)
        if data[:64].lstrip().lower().startswith(HTML_STARTS) and "html" not in attachment.name:
            # Without files:read (or with a revoked token) Slack answers with its
            # sign-in page, not an error: never read that as the file.
            raise DownloadFailed("Slack sent a web page instead of the file")
        return data

    async def show_reasoning(self, label: str, summary: str) -> None:
        """A context block (small grey text) before the answer; it takes the
        placeholder's place, so the answer still comes after it."""
        shown = f"_{_escape(label)}:_ {_escape(summary)}"
        kwargs: dict[str, Any] = {
            "channel": self._channel,
            "text": f"{label}: {summary}",
            "blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": shown}]}],
        }
        if self._placeholder is not None:
            ts, self._placeholder = self._placeholder, None
            await self._write(UPDATE, self._client.chat_update, ts=ts, **kwargs)
            return
        if self._thread is not None:
            kwargs["thread_ts"] = self._thread
        await self._write(POST, self._client.chat_postMessage, **kwargs)

    async def send(self, text: str) -> str:
        """Post a message (the first one replaces a placeholder); return its ts."""
        if self._placeholder is not None:
            ts, self._placeholder = self._placeholder, None
            await self.edit(ts, text)
            return ts
        return await self._post(text)

    async def edit(self, message_id: str, text: str) -> None:
        """Replace a message's text."""
        await self._write(
            UPDATE,
            self._client.chat_update,
            channel=self._channel,
            ts=message_id,
            markdown_text=neutralise(text),
        )

    async def stream_start(self, text: str) -> str:
        """Open a natively streamed reply; NativeStreamUnavailable if refused."""
        if self._thread is None or self._team in self._fallbacks.no_stream:
            raise NativeStreamUnavailable("no native streaming here")
        ready, held = split_ready(text)
        try:
            response = await self._write(
                "chat.startStream",
                self._client.chat_startStream,
                channel=self._channel,
                thread_ts=self._thread,
                markdown_text=neutralise(ready) or None,
                recipient_team_id=self._team or None,
                recipient_user_id=self._user or None,
            )
        except SlackApiError as exc:
            if not is_refusal(exc):
                raise
            log.info("team %s refused native streaming (%s)", self._team, _error_code(exc))
            self._fallbacks.no_stream.add(self._team)
            self.limits = replace(self.limits, native_stream=False)
            raise NativeStreamUnavailable(_error_code(exc)) from exc
        await self._drop_placeholder()
        stream_id = str(response["ts"])
        self._held[stream_id] = held
        return stream_id

    async def stream_append(self, stream_id: str, text: str) -> None:
        """Append text to the streamed reply (a possible mention's start waits for more)."""
        ready, self._held[stream_id] = split_ready(self._held.get(stream_id, "") + text)
        if ready:
            await self._write(
                "chat.appendStream",
                self._client.chat_appendStream,
                channel=self._channel,
                ts=stream_id,
                markdown_text=neutralise(ready),
            )

    async def stream_stop(self, stream_id: str, text: str = "") -> None:
        """Finish the streamed reply, with the rest of its text (and any held back)."""
        rest = neutralise(self._held.pop(stream_id, "") + text)
        await self._write(
            "chat.stopStream",
            self._client.chat_stopStream,
            channel=self._channel,
            ts=stream_id,
            markdown_text=rest or None,
        )

    async def ask_approval(self, text: str, token: str, allow: str, deny: str) -> str:
        """A tool's approval question with Allow/Deny buttons; the press comes back as a
        block action (adapter._on_action)."""
        shown = neutralise(text)
        kwargs: dict[str, Any] = {
            "channel": self._channel,
            "text": shown,
            "blocks": question_blocks(shown, token, allow, deny),
        }
        if self._thread is not None:
            kwargs["thread_ts"] = self._thread
        response = await self._write(POST, self._client.chat_postMessage, **kwargs)
        return str(response["ts"])

    async def _post(self, text: str) -> str:
        kwargs: dict[str, Any] = {"channel": self._channel, "markdown_text": neutralise(text)}
        if self._thread is not None:
            kwargs["thread_ts"] = self._thread
        response = await self._write(POST, self._client.chat_postMessage, **kwargs)
        return str(response["ts"])

    async def _write(self, method: str, call: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        """Make one write; on a 429, block its bucket for Retry-After, wait, write again."""
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                return await call(**kwargs)
            except SlackApiError as exc:
                if _error_code(exc) in FIXED_BY_OPERATOR:
                    raise self._refused(method, _error_code(exc)) from exc
                wait = retry_after(exc)
                if wait is not None:
                    EVENTS.platform_429s["slack"] += 1  # the metrics endpoint's count
                if wait is None or attempt == RATE_LIMIT_RETRIES:
                    raise
                self.rate_limited += 1
                log.info("%s in %s: 429, retrying after %.0f s", method, self._channel, wait)
                await self._back_off(self._pace(method), wait)
        raise AssertionError("unreachable")

    def _refused(self, method: str, error: str) -> PlatformRefused:
        fix = FIXED_BY_OPERATOR[error]
        return PlatformRefused(f"Slack refused {method} in {self._channel}: {error}; {fix}")

    async def _back_off(self, pace: Pace, seconds: float) -> None:
        """Every write of ``pace``'s bucket waits out the block; this one waits its turn."""
        if self._pacer is None:
            await asyncio.sleep(seconds)
            return
        self._pacer.block(*pace.args, seconds)
        await self._pacer.acquire(*pace.args)

    async def _drop_placeholder(self) -> None:
        """The streamed reply takes the placeholder's place."""
        if self._placeholder is None:
            return
        ts, self._placeholder = self._placeholder, None
        try:
            await self._client.chat_delete(channel=self._channel, ts=ts)
        except SlackApiError as exc:  # a stray "…" is harmless; the answer matters
            log.info("could not remove the placeholder %s: %s", ts, _error_code(exc))


def _escape(text: str) -> str:
    """Slack mrkdwn control characters as entities (no mentions, no links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _error_code(exc: SlackApiError) -> str:
    response = exc.response
    try:
        return str(response.get("error") or "")
    except AttributeError:
        return ""
