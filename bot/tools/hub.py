"""Every configured MCP server, and which of their tools a conversation gets.

The hub starts one :class:`~bot.tools.mcp_client.ServerLink` per server at
start-up and never waits long for them: a server that is down only hides its
tools until its link is back. Tool names are what the model calls; when two
servers offer the same name, the first server in the config keeps it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.types import ConversationKey

from .config import ToolsConfig, enabled_for
from .mcp_client import ServerLink, ToolUnavailable
from .specs import ToolOutput, ToolSpec

log = logging.getLogger(__name__)

START_WAIT_S = 5.0  # start-up waits this long for the first connections, then goes on


class ToolHub:
    """The MCP servers of the process."""

    def __init__(self, settings: ToolsConfig) -> None:
        self.settings = settings
        self.links = [ServerLink(server, settings) for server in settings.servers]

    async def start(self, wait_s: float = START_WAIT_S) -> None:
        """Connect every server in the background; wait a little for the first tries."""
        for link in self.links:
            link.start()
        if self.links:
            await asyncio.gather(*(link.settled(wait_s) for link in self.links))

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links))

    def enabled(self, key: ConversationKey) -> bool:
        """Whether tools are on in this conversation (``tools.enabled_in``)."""
        if not self.links:
            return False
        return enabled_for(self.settings.enabled_in, key.platform, key.workspace, key.channel)

    def available(self, key: ConversationKey) -> list[ToolSpec]:
        """The tools the model may call here now (servers that are up)."""
        if not self.enabled(key):
            return []
        seen: dict[str, ToolSpec] = {}
        for link in self.links:
            for spec in link.tools if link.state == "up" else ():
                seen.setdefault(spec.name, spec)
        return list(seen.values())

    async def call(self, spec: ToolSpec, arguments: dict[str, object]) -> ToolOutput:
        """Call a tool on its server; a server that is gone is an error result."""
        link = next((lk for lk in self.links if lk.name == spec.server), None)
        if link is None:
            return ToolOutput(f"error: the tool server {spec.server} is not configured", True)
        try:
            return await link.call(spec.name, dict(arguments), self.settings.call_timeout_s)
        except ToolUnavailable:
            return ToolOutput(f"error: the tool server {spec.server} is unavailable", True)

    def down_servers(self) -> list[str]:
        """Servers whose tools are hidden because they are not connected."""
        return [link.name for link in self.links if link.state != "up"]

    def status_lines(self) -> Sequence[str]:
        """One line per server, for ``python -m bot check`` and logs."""
        lines = []
        for link in self.links:
            if link.state == "up":
                names = ", ".join(spec.name for spec in link.tools) or "(no allowed tools)"
                lines.append(f"{link.name}: up, tools: {names}")
            else:
                lines.append(f"{link.name}: {link.state} ({link.error or 'not connected yet'})")
        return lines
