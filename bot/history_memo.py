"""What :func:`bot.context.build_messages` reuses between answers: the history memo.

A busy conversation's history (up to 200 turns) is rebuilt for every answer, and
all but its newest turns were built for the previous one. :class:`HistoryMemo`
caches, per token counter:

* each stored turn's history message and cost (an *entry*), keyed by the
  store's turn id (never reused) and the group flag (it adds "Name: " labels);
* each conversation's history as of its previous answer (a *run*), so the next
  answer extends it by its new turns and finds where the budget cuts it with a
  binary search instead of walking every turn: in the bot under load the walk
  costs several times what a tight loop suggests (the entries are not in the
  CPU's caches by then);
* each speaker's label and each system prompt with their token counts: the
  tokenizer's tables do not stay in the CPU's caches between answers either
  (PERFORMANCE.md, "History messages are built once per turn").

Bounds: ``MEMO_TURNS`` turns and ``MEMO_BYTES`` bytes (by :func:`entry_bytes`:
half for the entries, split between the two modes, half for the runs),
``MEMO_LABELS`` labels, ``MEMO_SYSTEM_PROMPTS`` prompts. Long messages reach the
byte bound long before the count. Each part starts over when full: simpler than
an LRU, and a rebuild costs one answer's worth of work. A run or entry larger
than its share is not kept.

Every build with a memo equals one from scratch (tests/test_context.py compares
them); the memo only saves work. That holds with several instances writing one
conversation (bot/handoff.py): turn ids are never reused and a turn's text never
changes, each build starts from the turns the store just loaded, and a run is reused
only where those ids repeat it exactly (``_overlap``); turns another instance wrote
in between make it start over (tests/test_handoff.py). It is mutated by every build that uses it, so
one memo belongs to one event loop (the core's).
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from bot.prompt_parts import (
    Entry,
    Label,
    Part,
    PrefixCosts,
    SpeakerKey,
    history_entry,
    system_part,
)
from bot.tokens import TokenCounter
from bot.types import ChatMessage, Turn

MEMO_TURNS = 16_384  # stored turns whose history message a HistoryMemo keeps
MEMO_BYTES = 32 * 1024 * 1024  # and their size (entry_bytes): half for entries, half for runs
# A memo entry besides its text: the message dict, the entry tuple, its id key and
# dict slot (measured with sys.getsizeof, rounded up).
ENTRY_OVERHEAD_BYTES = 400
MEMO_LABELS = 4096  # speakers whose "Name: " label and its cost a HistoryMemo keeps
MEMO_SYSTEM_PROMPTS = 64  # system prompts (with the group line or not) and their cost

# What fitting a history gives: the kept messages, their cost, the turns dropped.
Fitted = tuple[list[ChatMessage], int, int]


def entry_bytes(entry: Entry) -> int:
    """What keeping ``entry`` costs: its text as CPython holds it (``sys.getsizeof``,
    1 to 4 bytes a character) plus a constant; an approximation, never a walk."""
    message = entry[0]
    text = 0 if message is None else sys.getsizeof(message["content"])
    if message is not None and "tools" in message:  # a stored tool exchange (bot/tool_use.py)
        text += sys.getsizeof(message["tools"])
    return text + ENTRY_OVERHEAD_BYTES


class _Known(dict[int, Entry]):
    """History entries by turn id within ``max_bytes`` (``put`` keeps the total)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.bytes = 0

    def put(self, turn_id: int, entry: Entry) -> None:
        size = entry_bytes(entry)
        if size > self.max_bytes:
            return  # larger than the whole budget: not kept
        if self.bytes + size > self.max_bytes:
            self.clear()
        self[turn_id] = entry
        self.bytes += size

    def clear(self) -> None:
        super().clear()
        self.bytes = 0


class HistoryMemo:
    """The entries, runs, labels and system prompts builds reuse (module docstring);
    one memo per token counter."""

    def __init__(self, size: int = MEMO_TURNS, max_bytes: int = MEMO_BYTES) -> None:
        self._size = size
        self._half_bytes = max(max_bytes // 2, 1)
        quarter = max(self._half_bytes // 2, 1)
        self._known = (_Known(quarter), _Known(quarter))
        self._labels: dict[SpeakerKey, Label] = {}
        self._systems: dict[tuple[str, bool], Part] = {}
        self._runs: dict[tuple[str, bool], _Run] = {}
        self._run_turns = 0  # turns held by all runs; they start over past ``size``
        self._run_bytes = 0  # and their bytes, past half of ``max_bytes``

    def __len__(self) -> int:
        return len(self._known[0]) + len(self._known[1])

    @property
    def bytes(self) -> int:
        """Approximate bytes held by entries and runs (see entry_bytes)."""
        return self._known[0].bytes + self._known[1].bytes + self._run_bytes

    def entries(self, group: bool) -> _Known:
        """The entries of one mode, emptied first if the memo is full."""
        if len(self) >= self._size or self._known[0].bytes + self._known[1].bytes >= (
            self._half_bytes
        ):
            self._known[0].clear()
            self._known[1].clear()
        return self._known[group]

    def fit(
        self, key: str, group: bool, older: Sequence[Turn], prefixes: PrefixCosts, room: int
    ) -> Fitted | None:
        """Conversation ``key``'s history ``older`` cut to ``room`` as the plain walk
        cuts it, from its run; None for turns without ids (not stored), which no
        memo can key."""
        run = self._run(key, group, older, prefixes)
        return None if run is None else _fit_run(run, room)

    def _run(
        self, key: str, group: bool, older: Sequence[Turn], prefixes: PrefixCosts
    ) -> _Run | None:
        """Conversation ``key``'s run moved on to ``older``."""
        ids = [turn.id for turn in older]
        if 0 in ids:
            return None
        previous = self._runs.pop((key, group), None)
        run = _extend_run(previous, ids, older, prefixes, self.entries(group))
        self._run_turns += len(run.ids) - (len(previous.ids) if previous else 0)
        self._run_bytes += run.size - (previous.size if previous else 0)
        if self._run_turns > self._size or self._run_bytes > self._half_bytes:
            self._runs.clear()
            self._run_turns, self._run_bytes = len(run.ids), run.size
        if run.size > self._half_bytes:  # not kept: the next call builds it again
            self._run_turns = self._run_bytes = 0
            return run
        self._runs[(key, group)] = run
        return run

    def labels(self) -> dict[SpeakerKey, Label]:
        """The speakers' labels, emptied first if full."""
        if len(self._labels) >= MEMO_LABELS:
            self._labels.clear()
        return self._labels

    def system_part(self, system_prompt: str, group: bool, counter: TokenCounter) -> Part:
        """:func:`bot.prompt_parts.system_part`, counted once per prompt and mode."""
        key = (system_prompt, group)
        part = self._systems.get(key)
        if part is None:
            if len(self._systems) >= MEMO_SYSTEM_PROMPTS:
                self._systems.clear()
            part = self._systems[key] = system_part(system_prompt, group, counter)
        return part


@dataclass(slots=True)
class _Run:
    """A conversation's history as of the previous call: its turn ids, the messages of
    its non-blank turns, and running totals (one longer than ``ids``) of the turns'
    costs, of their messages and of their sizes (entry_bytes). Only differences of
    totals matter, so dropping the oldest turns is a slice."""

    ids: list[int]
    messages: list[ChatMessage]
    cost_sums: list[int]
    count_sums: list[int]
    byte_sums: list[int]

    @property
    def size(self) -> int:
        """Approximate bytes its messages hold."""
        return self.byte_sums[-1] - self.byte_sums[0]


def _fit_run(run: _Run, room: int) -> Fitted:
    """The plain walk's cut (``bot.context._fit_history``) on a run: the longest
    stretch of newest turns within ``room`` (costs are never negative), found by a
    binary search on the totals."""
    sums, counts = run.cost_sums, run.count_sums
    room = max(room, 0)  # a system prompt and message that overflow leave no room, not less
    if sums[-1] - sums[0] <= room:  # the common case: all of it fits
        return run.messages, sums[-1] - sums[0], 0
    start = bisect.bisect_left(sums, sums[-1] - room)  # the first turn kept
    dropped = counts[start] - counts[0]
    kept = run.messages[dropped:]
    cost = sums[-1] - sums[start]
    skip = 0  # leading answers dropped too, as the plain walk drops them
    while skip < len(kept) and kept[skip]["role"] == "assistant":
        while counts[start + 1] == counts[start]:  # a blank turn: no message
            start += 1
        cost -= sums[start + 1] - sums[start]
        start += 1
        skip += 1
    return kept[skip:], cost, dropped + skip


def _extend_run(
    run: _Run | None,
    ids: list[int],
    older: Sequence[Turn],
    prefixes: PrefixCosts,
    known: _Known,
) -> _Run:
    """``run`` moved on to ``older`` (whose turn ids are ``ids``): what ``older`` repeats
    of it is reused, the rest is built (or found in ``known``)."""
    start = _overlap(run, ids)
    if run is None or start is None:
        reused, messages, cost_sums, count_sums, byte_sums = 0, [], [0], [0], [0]
    else:
        reused = len(run.ids) - start
        messages = run.messages[run.count_sums[start] - run.count_sums[0] :]
        cost_sums, count_sums = run.cost_sums[start:], run.count_sums[start:]
        byte_sums = run.byte_sums[start:]
    cost, count, size = cost_sums[-1], count_sums[-1], byte_sums[-1]
    for turn in older[reused:]:
        entry = known.get(turn.id)
        if entry is None:
            entry = history_entry(turn, prefixes)
            known.put(turn.id, entry)
        message, turn_cost = entry
        if message is not None:
            messages.append(message)
            count += 1
        cost += turn_cost
        size += entry_bytes(entry)
        cost_sums.append(cost)
        count_sums.append(count)
        byte_sums.append(size)
    return _Run(ids, messages, cost_sums, count_sums, byte_sums)


def _overlap(run: _Run | None, ids: list[int]) -> int | None:
    """Where in ``run`` the turns ``ids`` begin with, if they go on with all of the
    run's later turns in the same order; None if they do not."""
    if run is None or not ids:
        return None
    start = bisect.bisect_left(run.ids, ids[0])  # ids ascend: the store's order
    rest = run.ids[start:]
    if not rest or ids[: len(rest)] != rest:
        return None
    return start
