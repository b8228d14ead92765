"""Start-up of the tools: the hub of MCP servers and the loop's limits, from config.

The ``mcp`` SDK (about half a second of imports) is loaded only when servers are
configured: ``bot/tools/hub.py`` is imported inside the functions below.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.tool_loop import LoopLimits

from .config import ToolsConfig

if TYPE_CHECKING:
    from .hub import ToolHub

CHECK_WAIT_S = 10.0  # `python -m bot check` waits this long for each server


@dataclass(frozen=True, slots=True)
class RunningTools:
    """The hub (None without servers) and the limits the core's loop uses."""

    hub: ToolHub | None
    limits: LoopLimits

    async def close(self) -> None:
        if self.hub is not None:
            await self.hub.close()


def loop_limits(cfg: ToolsConfig) -> LoopLimits:
    return LoopLimits(
        max_rounds=cfg.max_rounds,
        call_timeout_s=cfg.call_timeout_s,
        total_timeout_s=cfg.total_timeout_s,
        result_tokens=cfg.result_tokens,
        approval_timeout_s=cfg.approval_timeout_s,
    )


async def running_tools(cfg: ToolsConfig) -> RunningTools:
    """Connect the configured servers (in the background after a short wait)."""
    if not cfg.servers:
        return RunningTools(None, loop_limits(cfg))
    from .hub import ToolHub  # the SDK only when it is used

    hub = ToolHub(cfg)
    await hub.start()
    return RunningTools(hub, loop_limits(cfg))


def check_tools_servers(cfg: ToolsConfig) -> list[str]:
    """Connect to each server once and say how it went (``python -m bot check``)."""
    if not cfg.servers:
        return []
    from .hub import ToolHub  # the SDK only when it is used

    async def probe() -> list[str]:
        hub = ToolHub(cfg)
        try:
            await hub.start(min(CHECK_WAIT_S, cfg.connect_timeout_s))
            return list(hub.status_lines())
        finally:
            await hub.close()

    return asyncio.run(probe())
