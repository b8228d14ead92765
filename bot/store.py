"""The storage interface the core uses; backends live in ``storage/``.

A backend is picked by the scheme of ``storage.url`` (``sqlite:///path``,
``memory://``) and loaded by module name, so ``bot/`` never imports ``storage/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .types import Turn


@dataclass(frozen=True, slots=True)
class Pending:
    """A message whose answer a crash cut off: never answered, or not fully shown."""

    user_turn_id: int
    answer: Turn | None  # stored but not marked delivered: show it again, don't regenerate


@dataclass(frozen=True, slots=True)
class StoredContext:
    """What one answer needs from the store, read in one go."""

    system_prompt: str | None  # the conversation's own; None: the configured default
    turns: list[Turn]  # as recent_turns returns them


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
        ``upto`` (answers sort right after the turn they reply to), oldest first.
        Answers not marked delivered are left out: history is what the user saw."""

    async def load_context(self, conversation: str, upto: int, limit: int) -> StoredContext:
        """``get_system_prompt`` and ``recent_turns`` together: one trip to the
        storage on every answer instead of two."""

    async def pending_turn(self, conversation: str, message_id: str) -> Pending | None:
        """``message_id``'s user turn if a crash cut its answer off: no answer stored
        and not marked done, or an answer stored but never marked delivered."""

    async def mark_delivered(self, conversation: str, answer_id: int) -> None:
        """Record that answer ``answer_id`` is fully shown on the platform."""

    async def mark_done(self, conversation: str, message_id: str) -> None:
        """Mark ``message_id`` finished although no answer was stored (the model
        failed and the user was told), so a redelivery is not answered again."""

    async def has_turns(self, conversation: str) -> bool:
        """Whether the conversation has any stored turn (the bot is in it)."""

    async def reset(self, conversation: str) -> None:
        """Forget the conversation's turns (its settings stay)."""

    async def get_system_prompt(self, conversation: str) -> str | None:
        """The conversation's own system prompt, if one was set."""

    async def set_system_prompt(self, conversation: str, prompt: str | None) -> None:
        """Set (or with None, clear) the conversation's system prompt."""
