"""The newest turns of recently active conversations, kept between answers.

Every answer reads its conversation's newest turns, up to ``HISTORY_TURNS`` (200)
rows, and turning rows into ``Turn`` objects was the biggest part of the store's
CPU per answer (PERFORMANCE.md, "Recent turns stay in memory"). The store keeps what
it read and what it wrote, so the next answer in the same conversation reads
nothing. The cache only ever holds what the database holds: it is filled from a
query, updated from the rows the store's own writes return, and dropped whenever
anything else may have written
(``storage/sqlite.py`` checks SQLite's ``data_version`` before each use).

It is bounded in bytes as well as in turns: 2,000 long messages would otherwise
hold hundreds of MB. A turn's size is its text as CPython holds it
(``sys.getsizeof``: 1, 2 or 4 bytes a character, plus a header) and a constant for
the ``Turn`` object, its key and its short strings. A conversation larger than the
whole budget is not held at all; the store then reads it from the file.
"""

from __future__ import annotations

import sys
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from bot.types import Turn

# Per conversation: more than the 200 turns an answer reads, so turns newer than
# the one being answered (a busy channel) still leave a full history below it.
TURNS_PER_CONVERSATION = 256
# Over all conversations (~10 MB at 600 bytes a turn); least recently used go first.
MAX_TURNS = 16_384
# Over all conversations, in bytes (``storage.sqlite`` passes the configured budget).
MAX_BYTES = 32 * 1024 * 1024
# A held turn besides its text: the Turn object, its (anchor, id) key, list slots,
# author id/name and message id strings (measured with sys.getsizeof, rounded up).
TURN_OVERHEAD_BYTES = 480
# Answers stored but not yet delivered, per conversation. One whose delivery failed
# is never marked; past this many the oldest is let go (if it is marked after all,
# the conversation is dropped and read again).
MAX_PENDING = 32
_AFTER_ALL_IDS = 2**63  # sorts after every (anchor, id) with the same anchor

Key = tuple[int, int]  # (anchor, id): the order of a conversation's turns


@dataclass(slots=True)
class _Entry:
    prompt: str | None  # the conversation's own system prompt
    keys: list[Key]  # ascending, one per turn
    turns: list[Turn]  # delivered turns, the newest ones, in order
    complete: bool  # no delivered turn sorts before turns[0]
    pending: dict[int, tuple[int, Turn]] = field(default_factory=dict)  # id -> anchor, turn
    size: int = 0  # bytes of turns and pending answers (turn_bytes)


def turn_bytes(turn: Turn) -> int:
    """What holding ``turn`` costs, approximately (module docstring)."""
    tools = 0 if turn.tools is None else sys.getsizeof(turn.tools)  # a stored tool exchange
    return sys.getsizeof(turn.content) + tools + TURN_OVERHEAD_BYTES


class TurnCache:
    """Per conversation: its prompt and its newest delivered turns, in order."""

    def __init__(
        self,
        max_turns: int = MAX_TURNS,
        per_conversation: int = TURNS_PER_CONVERSATION,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.per_conversation = per_conversation
        self._max_turns = max_turns
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._size = 0  # turns held, over all entries
        self._bytes = 0  # their turn_bytes, pending answers included

    def get(self, conversation: str, upto: int, limit: int) -> tuple[str | None, list[Turn]] | None:
        """The prompt and the newest ``limit`` turns at or before ``upto``; None if
        the cache cannot tell (not held, or older turns than it holds are needed)."""
        entry = self._entries.get(conversation)
        if entry is None:
            return None
        held = _select(entry, upto, limit)
        if held is not None:
            self._entries.move_to_end(conversation)
        return held

    def fill(
        self,
        conversation: str,
        prompt: str | None,
        newest: list[tuple[int, Turn]],
        upto: int = 0,
        limit: int = 0,
    ) -> tuple[str | None, list[Turn]] | None:
        """Hold what a query of the ``per_conversation`` newest delivered turns
        returned, as (anchor, turn) pairs, newest first; answer ``get(conversation,
        upto, limit)`` from it, even when it is too large to be held."""
        self.forget(conversation)
        complete = len(newest) < self.per_conversation
        keys = [(anchor, turn.id) for anchor, turn in reversed(newest)]
        turns = [turn for _, turn in reversed(newest)]
        entry = _Entry(prompt, keys, turns, complete, size=sum(map(turn_bytes, turns)))
        held = _select(entry, upto, limit)
        if entry.size > self._max_bytes:  # holding it would push everything else out
            return held
        self._entries[conversation] = entry
        self._size += len(turns)
        self._bytes += entry.size
        self._evict()
        return held

    def added(self, conversation: str, anchor: int, turn: Turn) -> None:
        """A turn was stored (answers are held aside until they are delivered)."""
        entry = self._entries.get(conversation)
        if entry is None:
            return
        if not turn.delivered:
            entry.pending[turn.id] = (anchor, turn)
            self._grow(entry, turn_bytes(turn))
            if len(entry.pending) > MAX_PENDING:
                _, oldest = entry.pending.pop(next(iter(entry.pending)))
                self._grow(entry, -turn_bytes(oldest))
            self._evict()
            return
        self._insert(entry, (anchor, turn.id), turn)

    def delivered(self, conversation: str, turn_id: int) -> None:
        """An answer stored earlier was marked delivered."""
        entry = self._entries.get(conversation)
        if entry is None:
            return
        held = entry.pending.pop(turn_id, None)
        if held is None:  # stored before the entry was filled: its place is unknown
            self.forget(conversation)
            return
        anchor, turn = held
        self._grow(entry, -turn_bytes(turn))
        self._insert(entry, (anchor, turn_id), replace(turn, delivered=True))

    def set_prompt(self, conversation: str, prompt: str | None) -> None:
        entry = self._entries.get(conversation)
        if entry is not None:
            entry.prompt = prompt

    def forget(self, conversation: str) -> None:
        entry = self._entries.pop(conversation, None)
        if entry is not None:
            self._size -= len(entry.turns)
            self._bytes -= entry.size

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """Approximate bytes held, over all conversations (see turn_bytes)."""
        return self._bytes

    def __len__(self) -> int:
        """Turns held, over all conversations."""
        return self._size

    def _insert(self, entry: _Entry, key: Key, turn: Turn) -> None:
        # An incomplete entry is always full, so a turn older than all it holds
        # is trimmed again at once: no gap can open below the held ones.
        at = bisect_left(entry.keys, key)
        if at < len(entry.keys) and entry.keys[at] == key:
            return  # a fill read it from the file while its write was finishing
        entry.keys.insert(at, key)
        entry.turns.insert(at, turn)
        self._size += 1
        self._grow(entry, turn_bytes(turn))
        if len(entry.turns) > self.per_conversation:
            self._grow(entry, -turn_bytes(entry.turns[0]))
            del entry.keys[0], entry.turns[0]
            entry.complete = False
            self._size -= 1
        self._evict()

    def _grow(self, entry: _Entry, change: int) -> None:
        entry.size += change
        self._bytes += change

    def _evict(self) -> None:
        while (self._size > self._max_turns or self._bytes > self._max_bytes) and self._entries:
            _, entry = self._entries.popitem(last=False)
            self._size -= len(entry.turns)
            self._bytes -= entry.size


def _select(entry: _Entry, upto: int, limit: int) -> tuple[str | None, list[Turn]] | None:
    """The prompt and the newest ``limit`` turns at or before ``upto``, if ``entry``
    holds them all."""
    end = bisect_right(entry.keys, (upto, _AFTER_ALL_IDS))
    start = end - limit
    if start < 0:
        if not entry.complete:
            return None
        start = 0
    return entry.prompt, entry.turns[start:end]
