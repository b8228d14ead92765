"""Tools in tests: the example MCP server (examples/mcp_notes_server.py) over stdio
or streamable HTTP on 127.0.0.1, a hub connected to it, and a core that uses it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from bot.tools.config import ToolsConfig, ToolServerConfig
from bot.tools.hub import ToolHub
from tests.support import ROOT

SERVER_MODULE = "examples.mcp_notes_server"
CONNECT_WAIT_S = 20.0  # the stdio server is a Python process: its imports take a while


def stdio_server(name: str = "notes", **kw: Any) -> ToolServerConfig:
    """The example server, started over stdio by the hub."""
    return replace(
        ToolServerConfig(name=name, command=sys.executable, args=("-m", SERVER_MODULE)), **kw
    )


def tools_config(*servers: ToolServerConfig, **kw: Any) -> ToolsConfig:
    return replace(ToolsConfig(servers=servers, connect_timeout_s=CONNECT_WAIT_S), **kw)


@contextlib.asynccontextmanager
async def connected_hub(cfg: ToolsConfig) -> AsyncIterator[ToolHub]:
    """A hub whose servers were given time to connect; closed afterwards."""
    hub = ToolHub(cfg)
    try:
        await hub.start(CONNECT_WAIT_S)
        yield hub
    finally:
        await hub.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def http_server() -> AsyncIterator[str]:
    """The example server over streamable HTTP on 127.0.0.1; its /mcp URL."""
    async with http_server_on(free_port()) as url:
        yield url


@contextlib.asynccontextmanager
async def http_server_on(port: int) -> AsyncIterator[str]:
    """The example server over streamable HTTP on ``port``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        SERVER_MODULE,
        "--http",
        "--port",
        str(port),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _until_listening(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        await process.wait()


async def _until_listening(port: int) -> None:
    async with asyncio.timeout(CONNECT_WAIT_S):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
