"""What several instances on one database share beyond the Store: conversation
leases and per-person message counts (bot/handoff.py, bot/shared_limit.py).

Every backend implements it (storage/), so the schema is the same everywhere; the
PostgreSQL one is what several processes share. Times are the store's clock.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .ratelimit import Decision
from .store import Unanswered
from .types import IncomingMessage, ReplySink


@runtime_checkable
class Coordination(Protocol):
    """Leases, waiting turns, live instances and per-person counts."""

    instance_id: str

    async def take_lease(self, conversation: str, stale_s: float) -> bool:
        """Make this instance the one answering ``conversation``, in one conditional
        write: True if nobody held it, this instance does, or its holder's heartbeat
        is older than ``stale_s``; False while another live instance holds it."""

    async def release_lease(self, conversation: str) -> None:
        """Give ``conversation`` up (only if this instance holds it)."""

    async def waiting_turns(self, conversation: str, since: float, limit: int) -> list[Unanswered]:
        """The conversation's user turns stored at or after ``since`` that are neither
        answered (and delivered) nor marked done, in stored order, at most ``limit``."""

    async def orphaned(self, since: float, stale_s: float, limit: int) -> list[str]:
        """Conversations with waiting turns (as ``waiting_turns``) that no instance
        with a heartbeat younger than ``stale_s`` holds; at most ``limit``."""

    async def alive_instances(self, stale_s: float) -> int:
        """How many instances beat within ``stale_s`` (this one included)."""

    async def count_message(self, person: str, minute: int) -> int:
        """Count one more message of ``person`` in ``minute`` (unix time // 60); the
        count so far in the newest minute any instance counted for them."""

    async def uncount_message(self, person: str, minute: int) -> None:
        """Take one message back (it was a duplicate)."""


class Arrivals(Protocol):
    """Who answers stored turns when several instances share the database
    (bot/handoff.py): told of each turn stored here, with its sink."""

    def arrived(self, conv: str, local: tuple[IncomingMessage, ReplySink] | None = None) -> None:
        """A turn of ``conv`` was stored."""


class PersonLimit(Protocol):
    """A per-person limit kept outside this process (bot/shared_limit.py)."""

    async def admit(self, person: str) -> Decision:
        """Count one message of ``person``."""

    async def give_back(self, person: str) -> None:
        """Uncount one (a duplicate)."""
