"""One MCP server, kept connected with the official ``mcp`` SDK.

A :class:`ServerLink` owns one background task that connects (stdio or
streamable HTTP), lists the server's tools, then keeps the session open and
pings it. When the server fails to start or drops, the task logs one line,
hides the server's tools and tries again after a growing delay (capped); the
bot itself never fails because of a server. The session's context managers
are entered and left in that one task, as anyio's cancel scopes require.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sys
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from bot.redact import redact_url

from .config import ToolsConfig, ToolServerConfig
from .specs import ToolOutput, ToolSpec

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
PING_INTERVAL_S = 30.0  # a server that stopped answering is noticed within this
MAX_TOOLS_PER_SERVER = 128  # a server listing more is cut (each costs prompt tokens)
MAX_DESCRIPTION_CHARS = 1024
ERROR_MAX_CHARS = 200
CLOSE_WAIT_S = 5.0
HTTP_TIMEOUT_S = 30.0  # connect, write, pool
HTTP_READ_TIMEOUT_S = 300.0

# What a call raises when the connection itself is gone.
DROPPED = (
    OSError,
    httpx2.HTTPError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)

LinkState = Literal["connecting", "up", "down"]


class ToolUnavailable(Exception):
    """The server is not connected (or dropped during the call)."""


class ServerLink:
    """One configured MCP server and its connection task."""

    def __init__(self, server: ToolServerConfig, settings: ToolsConfig) -> None:
        self.config = server
        self._settings = settings
        self.state: LinkState = "connecting"
        self.error = ""  # the last failure, short and without secrets
        self.tools: tuple[ToolSpec, ...] = ()  # empty unless up
        self._session: ClientSession | None = None
        self._dropped = asyncio.Event()
        self._up = asyncio.Event()  # set whenever the link is up or has failed once
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        """Start connecting in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mcp:{self.name}")

    async def settled(self, wait_s: float) -> None:
        """Wait until the first attempt ended (up or failed), at most ``wait_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), wait_s)

    async def close(self) -> None:
        """Stop the task and the server (a stdio server's process ends with it)."""
        if self._task is not None:
            self._task.cancel()
            # Bounded: shutdown must not wait on a server that ignores the goodbye.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, CLOSE_WAIT_S)
            self._task = None

    async def call(self, name: str, arguments: dict[str, Any], limit_s: float) -> ToolOutput:
        """Call one tool; raise ToolUnavailable when the server is not there."""
        session = self._session
        if session is None or self.state != "up":
            raise ToolUnavailable(self.name)
        try:
            result = await session.call_tool(name, arguments, read_timeout_seconds=limit_s)
        except MCPError as exc:
            if exc.error.code == types.CONNECTION_CLOSED:
                self._dropped.set()
                raise ToolUnavailable(self.name) from exc
            # The server refused the call (unknown tool, bad arguments) or timed out.
            return ToolOutput(f"error: {exc.error.message}"[:ERROR_MAX_CHARS], True)
        except DROPPED as exc:
            self._dropped.set()
            raise ToolUnavailable(self.name) from exc
        texts = [getattr(b, "text", "") or f"[{b.type} content]" for b in result.content]
        return ToolOutput("\n".join(texts), bool(result.is_error))

    # -- the connection task ------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            self.state = "connecting"
            try:
                await self._connected_once()
                failures = 0  # it was up: the next drop starts the backoff afresh
            except Exception as exc:  # anything a server does must not stop the bot
                self._fail(exc)
                failures += 1
            self.state, self.tools, self._session = "down", (), None
            self._up.set()
            delay = min(self._settings.retry_max_s, BACKOFF_FIRST_S * 2 ** min(failures, 20))
            await asyncio.sleep(delay / 2 + random.uniform(0, delay / 2))

    async def _connected_once(self) -> None:
        async with self._transport() as (read, write), ClientSession(read, write) as session:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                await session.initialize()
                listed = await session.list_tools()
            self.tools = self._specs(listed.tools)
            self._session, self.state, self.error = session, "up", ""
            self._dropped.clear()
            self._up.set()
            log.info("MCP server %s connected: %d tool(s)", self.name, len(self.tools))
            while not self._dropped.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dropped.wait(), PING_INTERVAL_S)
                if not self._dropped.is_set():
                    async with asyncio.timeout(self._settings.connect_timeout_s):
                        await session.send_ping()
            raise ConnectionError("the connection dropped")

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        server = self.config
        if server.command:
            params = StdioServerParameters(
                command=sys.executable if server.command == "python" else server.command,
                args=list(server.args),
                env=dict(server.env),
                cwd=os.getcwd(),
            )
            async with stdio_client(params) as streams:
                yield streams
            return
        # The SDK's own defaults: a response stream may stay open for minutes.
        timeout = httpx2.Timeout(HTTP_TIMEOUT_S, read=HTTP_READ_TIMEOUT_S)
        client = httpx2.AsyncClient(headers=dict(server.headers), timeout=timeout)
        async with client, streamable_http_client(server.url, http_client=client) as streams:
            yield streams

    def _specs(self, tools: list[Any]) -> tuple[ToolSpec, ...]:
        specs = []
        for tool in tools[:MAX_TOOLS_PER_SERVER]:
            if not self.config.allows(tool.name):
                continue
            specs.append(
                ToolSpec(
                    server=self.name,
                    name=tool.name,
                    description=(tool.description or "")[:MAX_DESCRIPTION_CHARS],
                    parameters=tool.input_schema or {},
                    confirm=self.config.needs_confirm(tool.name),
                )
            )
        return tuple(specs)

    def _fail(self, exc: BaseException) -> None:
        self.error = describe(exc, self.config)
        log.warning("MCP server %s unavailable: %s", self.name, self.error)


def describe(exc: BaseException, server: ToolServerConfig) -> str:
    """One short line about a failure, without the server's secrets."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = f"{type(exc).__name__}: {exc}"
    for secret in (*server.env.values(), *server.headers.values()):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    if server.url:
        text = text.replace(server.url, redact_url(server.url))
    return text[:ERROR_MAX_CHARS]
