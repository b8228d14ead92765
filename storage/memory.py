"""An in-memory store with the SQLite store's semantics (tests, benchmarks, demos).

Restart recovery: one object is one database, and ``close`` then ``open`` is a
restart (the data stays). Its instance is alive from ``open`` to ``close``; no
other process can share it, so there is no heartbeat to go stale.
"""

from __future__ import annotations

import bisect
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence

from bot.instances import new_instance_id
from bot.store import Origin, Pending, StoredContext, Unanswered
from bot.types import Media, Turn
from bot.usage import UsageQuery, UsageRecord, UsageTotals

from .memory_usage import MemoryLedger
from .migrations import SEEN_RETENTION_S

PRUNE_INTERVAL_S = 3600.0
MAX_COUNTED_PEOPLE = 100_000  # per-person counts kept; past it, old minutes are dropped
DAY_S = 24 * 3600.0

_Position = tuple[int, int]  # (anchor, id): the order turns are read back in


@dataclasses.dataclass(slots=True)
class _History:
    """One conversation's turns, kept sorted by position."""

    positions: list[_Position] = dataclasses.field(default_factory=list)
    turns: list[Turn] = dataclasses.field(default_factory=list)

    def add(self, position: _Position, turn: Turn) -> None:
        at = bisect.bisect_right(self.positions, position)
        self.positions.insert(at, position)
        self.turns.insert(at, turn)

    def has(self, user_turn_id: int) -> bool:
        """Whether the user turn with this id is stored (its position is (id, id))."""
        at = bisect.bisect_left(self.positions, (user_turn_id, user_turn_id))
        return at < len(self.positions) and self.positions[at] == (user_turn_id, user_turn_id)

    def pending(self, message_id: str) -> Pending | None:
        """The user turn for ``message_id`` if no delivered answer follows it."""
        for turn in self.turns:
            if turn.role == "user" and turn.message_id == message_id:
                answers = [t for t in self.turns if t.role == "assistant" and t.reply_to == turn.id]
                if not answers:
                    return Pending(turn.id, None)
                return None if answers[0].delivered else Pending(turn.id, answers[0])
        return None

    def user_turn(self, message_id: str) -> Turn | None:
        for turn in self.turns:
            if turn.role == "user" and turn.message_id == message_id:
                return turn
        return None

    def mark_delivered(self, answer_id: int) -> None:
        for i, turn in enumerate(self.turns):
            if turn.id == answer_id:
                self.turns[i] = dataclasses.replace(turn, delivered=True)

    def drop_older(self, cutoff: float) -> int:
        """Forget turns created before ``cutoff``; how many."""
        kept = [
            (p, t)
            for p, t in zip(self.positions, self.turns, strict=True)
            if t.created_at >= cutoff
        ]
        dropped = len(self.turns) - len(kept)
        if dropped:
            self.positions = [p for p, _ in kept]
            self.turns = [t for _, t in kept]
        return dropped

    def drop_person(self, person: str) -> int:
        """Forget ``person``'s user turns and the answers to them; how many of theirs."""
        theirs = {t.id for t in self.turns if t.role == "user" and t.author_id == person}
        if theirs:
            kept = [
                (p, t)
                for p, t in zip(self.positions, self.turns, strict=True)
                if t.id not in theirs and t.reply_to not in theirs
            ]
            self.positions = [p for p, _ in kept]
            self.turns = [t for _, t in kept]
        return len(theirs)

    def upto(self, anchor: int, limit: int) -> list[Turn]:
        end = bisect.bisect_right(self.positions, (anchor, sys.maxsize))
        shown = [t for t in self.turns[:end] if t.delivered]  # what the user saw
        return shown[max(0, len(shown) - limit) :]


class MemoryStore:
    """A :class:`bot.store.Store` that lives in this process only.

    Every method finishes without awaiting, so concurrent callers can never see
    half of an operation. Ids count up from 1 and are never reused.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, retention_days: float = 0.0
    ) -> None:
        self._clock = clock
        self._retention_s = retention_days * DAY_S  # 0: keep turns forever
        self._histories: dict[str, _History] = {}
        # Insertion-ordered, so the oldest rows come first when pruning.
        self._seen: dict[tuple[str, str], float] = {}
        self._prompts: dict[str, str] = {}
        self._models: dict[str, str] = {}
        self._done: set[tuple[str, str]] = set()
        self._last_id = 0
        self._next_prune = 0.0
        # Restart recovery: who answers each message, and where its answer goes.
        self._owners: dict[tuple[str, str], str] = {}
        self._origins: dict[tuple[str, str], Origin] = {}
        self.instance_id = new_instance_id()
        self._live: set[str] = {self.instance_id}
        self._ledger = MemoryLedger()
        # Attachments kept per conversation: (user turn id, created at, media), oldest first.
        self._media: dict[str, list[tuple[int, float, Media]]] = {}
        self._leases: dict[str, str] = {}  # conversation -> holder (bot/handoff.py)
        self._counts: dict[str, tuple[int, int]] = {}  # person -> (minute, count)

    async def open(self) -> None:
        """A new instance after ``close`` (a restart); nothing else to open."""
        if self.instance_id not in self._live:
            self.instance_id = new_instance_id()
            self._live.add(self.instance_id)

    async def close(self) -> None:
        """The instance ends; the data stays with the object."""
        self._live.discard(self.instance_id)

    async def add_user_turn(
        self, conversation: str, turn: Turn, origin: Origin | None = None
    ) -> int | None:
        """Store a user turn unless its message id was seen."""
        _check_role(turn, "user")
        if turn.message_id is not None:
            if not self._claim(conversation, turn.message_id):
                return None
            key = (conversation, turn.message_id)
            self._owners[key] = self.instance_id
            self._origins[key] = origin or Origin(None)
        turn_id = self._next_id()
        self._add(conversation, (turn_id, turn_id), dataclasses.replace(turn, id=turn_id))
        return turn_id

    async def add_assistant_turn(self, conversation: str, turn: Turn) -> int | None:
        """Store an answer right after ``turn.reply_to``; None if that turn is gone."""
        _check_role(turn, "assistant")
        history = self._histories.get(conversation)
        if turn.reply_to is not None and (history is None or not history.has(turn.reply_to)):
            return None
        turn_id = self._next_id()
        anchor = turn_id if turn.reply_to is None else turn.reply_to
        self._add(conversation, (anchor, turn_id), dataclasses.replace(turn, id=turn_id))
        return turn_id

    async def claim(self, conversation: str, message_id: str) -> bool:
        """Record a message id; True the first time only."""
        return self._claim(conversation, message_id)

    async def recent_turns(self, conversation: str, upto: int, limit: int) -> list[Turn]:
        """The newest ``limit`` turns at or before user turn ``upto``, oldest first."""
        history = self._histories.get(conversation)
        if history is None or limit <= 0:
            return []
        return history.upto(upto, limit)

    async def load_context(self, conversation: str, upto: int, limit: int) -> StoredContext:
        """The conversation's own system prompt and its recent turns."""
        turns = await self.recent_turns(conversation, upto, limit)
        return StoredContext(self._prompts.get(conversation), turns)

    async def has_turns(self, conversation: str) -> bool:
        """Whether the conversation has any stored turn."""
        return conversation in self._histories

    async def seen(self, conversation: str, message_id: str) -> bool:
        """Whether ``message_id`` was stored (or claimed) before: read only."""
        return (conversation, message_id) in self._seen

    async def pending_turn(self, conversation: str, message_id: str) -> Pending | None:
        """``message_id``'s user turn if a crash cut its answer off (see Store)."""
        history = self._histories.get(conversation)
        if history is None or (conversation, message_id) in self._done:
            return None
        return history.pending(message_id)

    async def mark_delivered(self, conversation: str, answer_id: int) -> None:
        """Record that an answer is fully shown."""
        history = self._histories.get(conversation)
        if history is not None:
            history.mark_delivered(answer_id)

    async def mark_done(self, conversation: str, message_id: str) -> None:
        """Record that ``message_id`` was dealt with although no answer was stored."""
        self._done.add((conversation, message_id))

    async def unanswered(self, since: float, limit: int) -> list[Unanswered]:
        """Cut-off user turns stored since ``since``, oldest first."""
        found: list[Unanswered] = []
        for key, at in self._seen.items():
            if len(found) >= limit:
                break
            item = self._cut_off(key) if at >= since else None
            if item is not None:
                found.append(item)
        return found

    async def abandon_unanswered(
        self, since: float, before: float, limit: int
    ) -> list[tuple[str, str]]:
        """Mark done the cut-off user turns in [since, before) no live instance holds."""
        keys = [k for k, at in self._seen.items() if since <= at < before and self._cut_off(k)]
        abandoned = [k for k in keys[:limit] if self._takeable(k)]
        self._done.update(abandoned)
        return abandoned

    async def take_over(self, conversation: str, message_id: str) -> bool:
        """Own ``message_id`` unless a live instance does."""
        key = (conversation, message_id)
        if key not in self._seen or key in self._done or not self._takeable(key):
            return False
        self._owners[key] = self.instance_id
        return True

    # -- several instances (bot/coordination.py); here all are in this process --

    async def take_lease(self, conversation: str, stale_s: float) -> bool:
        """Hold ``conversation`` unless another live instance does."""
        holder = self._leases.get(conversation)
        if holder is not None and holder != self.instance_id and holder in self._live:
            return False
        self._leases[conversation] = self.instance_id
        return True

    async def release_lease(self, conversation: str) -> None:
        """Give ``conversation`` up if this instance holds it."""
        if self._leases.get(conversation) == self.instance_id:
            del self._leases[conversation]

    async def waiting_turns(self, conversation: str, since: float, limit: int) -> list[Unanswered]:
        """The conversation's unanswered user turns stored since ``since``, in order."""
        history = self._histories.get(conversation)
        if history is None:
            return []
        found = []
        for turn in sorted(history.turns, key=lambda t: t.id):
            key = (conversation, turn.message_id or "")
            if turn.role == "user" and self._seen.get(key, -1.0) >= since:
                item = self._cut_off(key)
                if item is not None:
                    found.append(item)
        return found[:limit]

    async def orphaned(self, since: float, stale_s: float, limit: int) -> list[str]:
        """Conversations with waiting turns that no live instance holds."""
        found: list[str] = []
        for key, at in self._seen.items():
            conversation = key[0]
            holder = self._leases.get(conversation)
            if at < since or conversation in found or (holder is not None and holder in self._live):
                continue
            if self._cut_off(key) is not None:
                found.append(conversation)
        return found[:limit]

    async def alive_instances(self, stale_s: float) -> int:
        """The instances open on this object."""
        return len(self._live)

    async def count_message(self, person: str, minute: int) -> int:
        """One more message of ``person`` in ``minute``; their count in it."""
        if len(self._counts) >= MAX_COUNTED_PEOPLE:
            self._counts = {p: c for p, c in self._counts.items() if c[0] >= minute - 1}
        held, count = self._counts.get(person, (minute, 0))
        count = count + 1 if held >= minute else 1
        self._counts[person] = (max(held, minute), count)
        return count

    async def uncount_message(self, person: str, minute: int) -> None:
        """Take one message of ``person`` in ``minute`` back."""
        held, count = self._counts.get(person, (minute, 0))
        if held == minute and count > 0:
            self._counts[person] = (held, count - 1)

    def _takeable(self, key: tuple[str, str]) -> bool:
        owner = self._owners.get(key)
        return owner is None or owner == self.instance_id or owner not in self._live

    def _cut_off(self, key: tuple[str, str]) -> Unanswered | None:
        conversation, message_id = key
        history = self._histories.get(conversation)
        if history is None or key in self._done or history.pending(message_id) is None:
            return None
        turn = history.user_turn(message_id)
        if turn is None:
            return None
        return Unanswered(conversation, turn, self._origins.get(key, Origin(None)))

    async def reset(self, conversation: str) -> None:
        """Forget the conversation's turns; dedupe rows and settings stay."""
        self._histories.pop(conversation, None)
        self._media.pop(conversation, None)

    async def add_media(
        self, conversation: str, turn_id: int, media: Sequence[Media], image_budget: int
    ) -> None:
        """Keep an attachment's content; the oldest images go past ``image_budget``."""
        kept = self._media.setdefault(conversation, [])
        kept.extend((turn_id, self._clock(), item) for item in media)
        total = 0
        for index in range(len(kept) - 1, -1, -1):  # newest first
            item = kept[index][2]
            if item.kind == "image":
                total += len(item.data)
                if total > image_budget:
                    del kept[index]

    async def media_for(self, conversation: str, first: int, last: int) -> dict[int, list[Media]]:
        """The media of user turns ``first``..``last``, by turn id."""
        found: dict[int, list[Media]] = {}
        for turn_id, _at, item in self._media.get(conversation, ()):
            if first <= turn_id <= last:
                found.setdefault(turn_id, []).append(item)
        return found

    async def get_model(self, conversation: str) -> str | None:
        """The model the conversation picked (``!model``), or None."""
        return self._models.get(conversation)

    async def set_model(self, conversation: str, model: str | None) -> None:
        """Pick, or with None forget, the conversation's model."""
        if model is None:
            self._models.pop(conversation, None)
        else:
            self._models[conversation] = model

    async def get_system_prompt(self, conversation: str) -> str | None:
        """The conversation's own system prompt, or None."""
        return self._prompts.get(conversation)

    async def set_system_prompt(self, conversation: str, prompt: str | None) -> None:
        """Set, or with None clear, the conversation's system prompt."""
        if prompt is None:
            self._prompts.pop(conversation, None)
        else:
            self._prompts[conversation] = prompt

    # -- the usage ledger (bot/usage.py; rows in storage/memory_usage.py) --

    async def record_usage(self, records: Sequence[UsageRecord]) -> None:
        """Add each record to its day's row."""
        for record in records:
            self._ledger.record(record)

    async def usage_totals(self, query: UsageQuery) -> UsageTotals:
        """Sums over the rows ``query`` picks."""
        return self._ledger.totals(query)

    async def top_users(self, query: UsageQuery, limit: int) -> list[tuple[str, UsageTotals]]:
        """The persons with the most tokens among the rows ``query`` picks."""
        return self._ledger.top(query, limit)

    async def forget_person(self, conversation_prefix: str, person: str) -> int:
        """Delete a person's turns and the answers to them in one workspace; how many
        of theirs."""
        forgotten = 0
        for conversation, history in list(self._histories.items()):
            if conversation.startswith(conversation_prefix):
                forgotten += history.drop_person(person)
                if not history.turns:
                    del self._histories[conversation]
        return forgotten

    async def prune_seen(self) -> int:
        """Forget dedupe rows older than the retention; return how many."""
        return self._prune(self._clock())

    async def prune_turns(self) -> int:
        """Forget turns older than ``retention_days`` (none with 0); how many."""
        return self._prune_turns(self._clock())

    def _prune_turns(self, now: float) -> int:
        if not self._retention_s:
            return 0
        cutoff, dropped = now - self._retention_s, 0
        for conversation, kept in list(self._media.items()):
            kept[:] = [row for row in kept if row[1] >= cutoff]
            if not kept:
                del self._media[conversation]
        for conversation, history in list(self._histories.items()):
            dropped += history.drop_older(cutoff)
            if not history.turns:
                del self._histories[conversation]
        return dropped

    def _claim(self, conversation: str, message_id: str) -> bool:
        now = self._clock()
        if now >= self._next_prune:
            self._prune(now)
        key = (conversation, message_id)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True

    def _prune(self, now: float) -> int:
        self._next_prune = now + PRUNE_INTERVAL_S
        self._prune_turns(now)
        cutoff = now - SEEN_RETENTION_S
        old: list[tuple[str, str]] = []
        for key, at in self._seen.items():  # oldest first: stop at the first young row
            if at >= cutoff:
                break
            old.append(key)
        for key in old:
            del self._seen[key]
            self._done.discard(key)
            self._owners.pop(key, None)
            self._origins.pop(key, None)
        return len(old)

    def _next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def _add(self, conversation: str, position: _Position, turn: Turn) -> None:
        self._histories.setdefault(conversation, _History()).add(position, turn)


def _check_role(turn: Turn, role: str) -> None:
    if turn.role != role:
        raise ValueError(f"expected a {role} turn, got {turn.role!r}")
