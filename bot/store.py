"""The storage interface the core uses; backends live in ``storage/``.

A backend is picked by the scheme of ``storage.url`` (``sqlite:///path``,
``memory://``) and loaded by module name, so ``bot/`` never imports ``storage/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .types import ConversationKey, Media, Turn


@dataclass(frozen=True, slots=True)
class Pending:
    """A message whose answer a crash cut off: never answered, or not fully shown."""

    user_turn_id: int
    answer: Turn | None  # stored but not marked delivered: show it again, don't regenerate


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a user turn came from, kept so it can be answered after a restart."""

    reply_target: str | None  # the adapter's own string (IncomingMessage.reply_target)
    is_dm: bool = False


@dataclass(frozen=True, slots=True)
class Unanswered:
    """A stored user turn whose answer a crash or shutdown cut off."""

    conversation: str
    turn: Turn  # the user turn; its message_id is set
    origin: Origin

    @property
    def key(self) -> ConversationKey:
        """The conversation's key (its platform picks the adapter that answers)."""
        return ConversationKey.parse(self.conversation)


@dataclass(frozen=True, slots=True)
class StoredContext:
    """What one answer needs from the store, read in one go."""

    system_prompt: str | None  # the conversation's own; None: the configured default
    turns: list[Turn]  # as recent_turns returns them
    # False when the conversation keeps no attachments (media_for need not be asked);
    # True when it may (a backend that does not say, since it costs it nothing).
    may_have_media: bool = True


class Store(Protocol):
    """Conversation history, per-conversation settings, and message dedupe."""

    async def open(self) -> None:
        """Create or migrate the schema; must be called before anything else."""

    async def close(self) -> None:
        """Flush and close; safe to call twice."""

    async def add_user_turn(
        self, conversation: str, turn: Turn, origin: Origin | None = None
    ) -> int | None:
        """Store a user turn; return its id, or None if ``turn.message_id`` was
        already seen in this conversation (a redelivered event). Durable on return.
        The message is owned by this instance (bot/instances.py); ``origin`` is
        kept for restart recovery."""

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

    async def seen(self, conversation: str, message_id: str) -> bool:
        """Whether ``message_id`` was stored (or claimed) before: read only."""

    async def reset(self, conversation: str) -> None:
        """Forget the conversation's turns (its settings stay)."""

    async def get_system_prompt(self, conversation: str) -> str | None:
        """The conversation's own system prompt, if one was set."""

    async def set_system_prompt(self, conversation: str, prompt: str | None) -> None:
        """Set (or with None, clear) the conversation's system prompt."""

    async def get_model(self, conversation: str) -> str | None:
        """The model the conversation picked with ``!model``, if any."""

    async def set_model(self, conversation: str, model: str | None) -> None:
        """Pick (or with None forget) the conversation's model; reset keeps it."""

    async def unanswered(self, since: float, limit: int) -> list[Unanswered]:
        """User turns stored at or after ``since`` (unix seconds) that a crash cut
        off (as ``pending_turn``), oldest first, at most ``limit``. Messages a live
        instance is answering right now are listed too: ``take_over`` decides."""

    async def abandon_unanswered(
        self, since: float, before: float, limit: int
    ) -> list[tuple[str, str]]:
        """Mark done the cut-off user turns stored in [``since``, ``before``) that no
        live instance holds, so they are never answered; their (conversation,
        message id), at most ``limit``."""

    async def add_media(
        self, conversation: str, turn_id: int, media: Sequence[Media], image_budget: int
    ) -> None:
        """Keep what was read from user turn ``turn_id``'s attachments. Afterwards the
        conversation's images hold at most ``image_budget`` bytes: the oldest go first.
        Reset and retention delete media with the turns."""

    async def media_for(self, conversation: str, first: int, last: int) -> dict[int, list[Media]]:
        """The media of user turns ``first``..``last`` (ids), by turn id, in stored order."""

    async def take_over(self, conversation: str, message_id: str) -> bool:
        """Make this instance the one answering ``message_id``, in one conditional
        write: True if it had no owner, its owner is this instance, or its owner
        stopped beating (bot/instances.py); False if another live instance holds
        it, or it is done or unknown."""
