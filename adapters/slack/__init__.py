"""Slack: mentions, thread follow-ups and DMs answered in their thread.

``adapters/registry.py`` calls :func:`create`; the adapter itself lives in ``adapter.py``,
the pure payload translation in ``translate.py`` and the reply sink in
``sink.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .adapter import SlackAdapter

if TYPE_CHECKING:
    from bot.adapter import Adapter, CoreAPI
    from bot.config import SlackConfig

__all__ = ["SlackAdapter", "create"]


def create(cfg: SlackConfig, core: CoreAPI) -> Adapter | None:
    """The Slack adapter, or None when no bot token is configured."""
    if not cfg.bot_token:
        return None
    return SlackAdapter(cfg, core, api_base_url=cfg.api_url or None)
