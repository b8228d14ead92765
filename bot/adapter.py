"""The interface every platform adapter implements.

``bot.app`` loads an adapter module by name (``adapters.discord``, ``adapters.slack``,
``adapters.console``) and calls its ``create(cfg, core)``, so the core never imports
a platform library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config import Config
    from .core import Core
    from .types import ReplySink


class Adapter(Protocol):
    """One running platform connection."""

    name: str

    async def start(self) -> None:
        """Connect and return once ready to receive messages.

        Raises bot.errors.StartupError with one clear line (bad token, missing
        intent or scope); the process then exits with status 2.
        """

    async def wait_closed(self) -> None:
        """Return when the adapter stopped on its own (e.g. connection lost for good)."""

    async def stop_intake(self) -> None:
        """Take no new messages and acknowledge nothing more; return once messages
        being handed to the core were taken or refused. Connections that answers
        post through stay open. Safe to call twice."""

    async def close(self) -> None:
        """Close every connection (after answers in flight had their grace period);
        safe to call twice."""

    def sink_for(self, target: str) -> ReplySink | None:
        """A sink that answers where ``target`` says (an ``IncomingMessage.reply_target``
        this adapter made, read back after a restart); None if it cannot."""


class AdapterFactory(Protocol):
    """``create`` of an adapter module: None when its credentials are not configured."""

    def __call__(self, cfg: Config, core: Core) -> Adapter | None: ...
