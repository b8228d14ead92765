"""The storage interface the core uses; backends live in ``storage/``.

A backend is picked by the scheme of ``storage.url`` (``sqlite:///path``,
``memory://``) and loaded by module name, so ``bot/`` never imports ``storage/``.
"""

from __future__ import annotations

from typing import Protocol

from .types import Turn


class Store(Protocol):
    """Conversation history, per-conversation settings, and message dedupe."""

    async def open(self) -> None:
        """Create or migrate the schema; must be called before anything else."""

    async def close(self) -> None:
        """Flush and close; safe to call twice."""

    async def add_user_turn(self, conversation: str, turn: Turn) -> int | None:
        """Store a user turn; return its id, or None if ``turn.message_id`` was
        already seen in this conversation (a redelivered event). Durable on return."""

    async def add_assistant_turn(self, conversation: str, turn: Turn) -> int | None:
        """Store a complete answer (``turn.reply_to`` = the user turn it answers).
        None, and nothing stored, if that user turn was reset away meanwhile."""

    async def claim(self, conversation: str, message_id: str) -> bool:
        """Mark a message as handled without storing a turn (commands).
        True the first time, False for a redelivery."""

    async def recent_turns(self, conversation: str, upto: int, limit: int) -> list[Turn]:
        """The newest ``limit`` turns whose order position is at or before user turn
        ``upto`` (answers sort right after the turn they reply to), oldest first."""

    async def has_turns(self, conversation: str) -> bool:
        """Whether the conversation has any stored turn (the bot is in it)."""

    async def reset(self, conversation: str) -> None:
        """Forget the conversation's turns (its settings stay)."""

    async def get_system_prompt(self, conversation: str) -> str | None:
        """The conversation's own system prompt, if one was set."""

    async def set_system_prompt(self, conversation: str, prompt: str | None) -> None:
        """Set (or with None, clear) the conversation's system prompt."""
