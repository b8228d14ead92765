"""Discord: mentions, replies, DMs, threads and slash commands, via discord.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .adapter import DiscordAdapter, point_at

if TYPE_CHECKING:
    from bot.adapter import Adapter, CoreAPI
    from bot.config import DiscordConfig

__all__ = ["DiscordAdapter", "create"]


def create(cfg: DiscordConfig, core: CoreAPI) -> Adapter | None:
    """The Discord adapter, or None when no bot token is configured."""
    if not cfg.enabled:
        return None
    if cfg.api_url:
        point_at(cfg.api_url)
    return DiscordAdapter(cfg, core)
