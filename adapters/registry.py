"""The platforms the bot can run, and how each adapter is built from the config.

A new platform is one entry in ``FACTORIES``: a function that hands the adapter its
own config section (``cfg.discord``, ``cfg.slack``, ``cfg.console``); the adapter
sees the core only through ``bot.adapter.CoreAPI``.

Each entry imports its adapter package when that platform is built, not when this
module is: ``bot.app`` imports this module, and ``python -m bot console`` or
``check``, a Slack-only deployment and every test that imports ``bot.app`` would
otherwise load discord.py and slack_bolt for nothing. The imports are ordinary
ones, so mypy checks each ``create`` call against the adapter's signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from bot.adapter import Adapter, AdapterFactory, CoreAPI
    from bot.config import Config
    from bot.types import Platform

# Started by `python -m bot` (run) when configured; the console only by `console`.
PLATFORMS: Final[tuple[Platform, ...]] = ("discord", "slack")


def _discord(cfg: Config, core: CoreAPI) -> Adapter | None:
    from adapters.discord import create  # loads discord.py: see the module docstring

    return create(cfg.discord, core)


def _slack(cfg: Config, core: CoreAPI) -> Adapter | None:
    from adapters.slack import create  # loads slack_bolt: see the module docstring

    return create(cfg.slack, core)


def _console(cfg: Config, core: CoreAPI) -> Adapter | None:
    from adapters.console import create

    return create(cfg.console, core)


FACTORIES: Final[Mapping[Platform, AdapterFactory]] = {
    "discord": _discord,
    "slack": _slack,
    "console": _console,
}


def create_adapter(name: Platform, cfg: Config, core: CoreAPI) -> Adapter | None:
    """The adapter of platform ``name``; None when it is not configured."""
    return FACTORIES[name](cfg, core)
