"""The interfaces between the core and the platform adapters.

An adapter implements :class:`Adapter` and sees the core only through
:class:`CoreAPI`, so it depends on these few members, not on ``bot.core.Core``.
``adapters/registry.py`` builds each adapter from its own config section; the
core never imports a platform library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config import Config
    from .pacing import Pacer
    from .texts import Texts
    from .types import IncomingMessage, ReplySink


class CommandSettings(Protocol):
    """The core settings an adapter reads."""

    @property
    def command_prefix(self) -> str:
        """What starts a text command (``!`` by default): Discord's auto-thread
        opens no thread for one."""
        ...

    @property
    def model_names(self) -> tuple[str, ...]:
        """The models ``!model`` offers (Discord lists them as ``/model`` choices)."""
        ...


class CoreAPI(Protocol):
    """What an adapter may ask of the core (``bot.core.Core`` implements it)."""

    @property
    def texts(self) -> Texts:
        """The user-visible texts in the configured language, for the adapter's own
        replies (welcome line, "not allowed here", storage failures)."""
        ...

    @property
    def settings(self) -> CommandSettings:
        """The core settings adapters read: ``command_prefix`` and ``model_names``."""
        ...

    @property
    def pacer(self) -> Pacer:
        """The core's pacer: a Slack sink tells it about a 429, so every writer of
        that bucket (the core's delivery included) backs off."""
        ...

    async def handle(self, msg: IncomingMessage, sink: ReplySink) -> None:
        """Accept one message; the answer follows through ``sink``.

        Raises StorageError when the message could not be stored and ShuttingDown
        once the core stopped taking messages: nothing was taken, so the adapter
        must not acknowledge the message (or must tell the user).
        """

    async def run_command(self, name: str, arg: str, msg: IncomingMessage, sink: ReplySink) -> None:
        """Run a core command given natively (a Discord slash command) for ``msg``'s
        conversation, replying through ``sink``; raises as ``handle`` does."""

    def answer_approval(self, token: str, person: str, yes: bool) -> bool:
        """A button press on a tool's approval question; True if it answered one."""
        ...

    async def drain(self) -> None:
        """Wait until every accepted message was answered (the console waits for
        one answer before it reads the next line)."""


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
    """One platform's entry in ``adapters/registry.py``: hands that adapter's own
    config section to its ``create``; None when its credentials are not configured."""

    def __call__(self, cfg: Config, core: CoreAPI) -> Adapter | None: ...
