"""Build the prompt for one answer: trim the history by tokens, never by count.

Pure: no I/O, no clock. Stored turns carry their token count (counted once when
stored), so trimming a long history costs no tokenizing; only text that is
shortened here, the system prompt and the short speaker prefixes are counted.
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from bot.tokens import TokenCounter
from bot.types import ChatMessage, Turn

MESSAGE_OVERHEAD_TOKENS = 4  # role and separators the API wraps around every message
REPLY_PRIMING_TOKENS = 3  # the API opens the assistant's reply inside the prompt
MIN_NEWEST_TOKENS = 32  # what is kept of the newest message even if the system prompt shrinks
MAX_NAME_CHARS = 40  # a speaker name is a label, not a place for text
MEMO_TURNS = 16_384  # stored turns whose history message a HistoryMemo keeps
MEMO_BYTES = 32 * 1024 * 1024  # and their size (entry_bytes): half for entries, half for runs
# A memo entry besides its text: the message dict, the entry tuple, its id key and
# dict slot (measured with sys.getsizeof, rounded up).
ENTRY_OVERHEAD_BYTES = 400
MEMO_LABELS = 4096  # speakers whose "Name: " label and its cost a HistoryMemo keeps
MEMO_SYSTEM_PROMPTS = 64  # system prompts (with the group line or not) and their cost
MAX_FIT_ATTEMPTS = 4  # shortening re-checks its own result; converges in one or two
NOTE_SEPARATOR = "\n\n"
GROUP_SYSTEM_LINE = (
    "Several people talk in this conversation: each user message starts with the "
    'speaker\'s name, like "Name: message".'
)

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ContextStats:
    """What trimming did, for logs and usage accounting."""

    dropped_turns: int  # older turns left out to fit the budget
    prompt_tokens: int  # our estimate of the prompt's size
    shortened: bool  # the newest message or the system prompt was cut


class _Part(NamedTuple):
    """The system prompt or the newest message, with its cost (content + prefix +
    overhead). History turns become message dicts directly (``_fit_history``)."""

    role: str
    content: str
    cost: int

    def message(self) -> ChatMessage:
        return {"role": self.role, "content": self.content}


# A history turn as the model sees it: its message (None for a blank turn, which
# is left out) and its cost in prompt tokens.
_Entry = tuple[ChatMessage | None, int]


def entry_bytes(entry: _Entry) -> int:
    """What keeping ``entry`` costs: its text as CPython holds it (``sys.getsizeof``,
    1 to 4 bytes a character) plus a constant; an approximation, never a walk."""
    message = entry[0]
    text = 0 if message is None else sys.getsizeof(message["content"])
    return text + ENTRY_OVERHEAD_BYTES


class _Known(dict[int, _Entry]):
    """History entries by turn id, with their total size (``put`` keeps it)."""

    def __init__(self, max_bytes: int | None = None) -> None:
        super().__init__()
        self.max_bytes = max_bytes  # None: unbounded (one call's own entries)
        self.bytes = 0

    def put(self, turn_id: int, entry: _Entry) -> None:
        if self.max_bytes is None:
            self[turn_id] = entry
            return
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


_Label = tuple[str, int]  # a speaker's "Name: " and its cost
_SpeakerKey = tuple[str | None, str | None]  # (author_name, author_id)


class HistoryMemo:
    """What :func:`build_messages` reuses between calls; one memo per token counter.

    * Each stored turn's history message and cost. A busy conversation's history
      (up to 200 turns) is rebuilt for every answer, and all but its newest turns
      were built for the previous one. Keyed by the store's turn id (never reused)
      and the group flag (it adds the "Name: " labels).
    * Each conversation's history as of its previous answer (a :class:`_Run`), so
      the next answer extends it by its new turns and finds where the budget cuts
      it with a binary search, instead of walking every turn: in the bot under load
      the walk costs several times what a tight loop suggests (the memo's entries
      are not in the CPU's caches by then).
    * Each speaker's label and each system prompt with their token counts. The
      tokenizer's tables do not stay in the CPU's caches between answers either, so
      even counting the default prompt again shows (PERFORMANCE.md, "History
      messages are built once per turn").

    Each part starts over when full: simpler than an LRU, and a rebuild costs one
    answer's worth of work. Full means ``size`` turns or ``max_bytes`` (half for
    the entries, half for the runs, by :func:`entry_bytes`): long messages reach the
    byte bound long before the count. A run larger than its half is not kept.
    """

    def __init__(self, size: int = MEMO_TURNS, max_bytes: int = MEMO_BYTES) -> None:
        self._size = size
        self._half_bytes = max(max_bytes // 2, 1)
        quarter = max(self._half_bytes // 2, 1)
        self._known = (_Known(quarter), _Known(quarter))
        self._labels: dict[_SpeakerKey, _Label] = {}
        self._systems: dict[tuple[str, bool], _Part] = {}
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

    def run(
        self, key: str, group: bool, older: Sequence[Turn], prefixes: _PrefixCosts
    ) -> _Run | None:
        """Conversation ``key``'s run moved on to ``older``; None for turns without
        ids (not stored), which no memo can key."""
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

    def labels(self) -> dict[_SpeakerKey, _Label]:
        """The speakers' labels, emptied first if full."""
        if len(self._labels) >= MEMO_LABELS:
            self._labels.clear()
        return self._labels

    def system_part(self, system_prompt: str, group: bool, counter: TokenCounter) -> _Part:
        """:func:`_system_part`, counted once per prompt and mode."""
        key = (system_prompt, group)
        part = self._systems.get(key)
        if part is None:
            if len(self._systems) >= MEMO_SYSTEM_PROMPTS:
                self._systems.clear()
            part = self._systems[key] = _system_part(system_prompt, group, counter)
        return part


def build_messages(
    system_prompt: str,
    turns: Sequence[Turn],
    budget: int,
    counter: TokenCounter,
    *,
    group: bool,
    shortened_note: str,
    memo: HistoryMemo | None = None,
    key: str | None = None,
) -> tuple[list[ChatMessage], ContextStats]:
    """Messages for the model, newest last, fitting ``budget`` prompt tokens.

    ``turns`` are oldest first and end with the user message being answered. The
    system prompt and that message are always included (shortened if they must
    be; ``shortened_note`` with ``{removed}`` marks the cut); older turns are
    dropped oldest first. With ``group``, user messages carry "Name: " prefixes.
    ``memo`` keeps the history turns' messages for the next call (they are shared
    between calls: do not change them); with ``key`` (the conversation) it also
    keeps the conversation's history whole.
    """
    if not turns:
        raise ValueError("build_messages needs at least the message being answered")
    *older, newest = turns
    prefixes = _PrefixCosts(counter, group, None if memo is None else memo.labels())
    room = budget - REPLY_PRIMING_TOKENS

    if memo is None:
        system = _system_part(system_prompt, group, counter)
    else:
        system = memo.system_part(system_prompt, group, counter)
    system, newest_part, shortened = _fit_system_and_newest(
        system, newest, prefixes.get(newest), room, counter, shortened_note
    )
    room_left = room - system.cost - newest_part.cost
    run = None if memo is None or key is None else memo.run(key, group, older, prefixes)
    if run is not None:
        kept, kept_cost, dropped = _fit_run(run, room_left)
    else:
        known = _Known() if memo is None else memo.entries(group)
        kept, kept_cost, dropped = _fit_history(older, room_left, prefixes, known)
    messages = ([system.message()] if system.content else []) + kept + [newest_part.message()]
    stats = ContextStats(
        dropped_turns=dropped,
        prompt_tokens=REPLY_PRIMING_TOKENS + system.cost + kept_cost + newest_part.cost,
        shortened=shortened,
    )
    return messages, stats


def _fit_system_and_newest(
    system: _Part,
    newest: Turn,
    prefix: _Label,
    room: int,
    counter: TokenCounter,
    shortened_note: str,
) -> tuple[_Part, _Part, bool]:
    """Make the system prompt and the newest message fit ``room`` together.

    The newest message gives way first; the system prompt is cut only when even
    a head of the newest message (plus the note) would not fit beside it.
    """
    prefix_text, prefix_cost = prefix
    full = _Part(
        newest.role,
        prefix_text + newest.content,
        newest.tokens + prefix_cost + MESSAGE_OVERHEAD_TOKENS,
    )
    if system.cost + full.cost <= room:
        return system, full, False
    note_cost = counter.count(_note(shortened_note, newest.tokens))
    head = MESSAGE_OVERHEAD_TOKENS + prefix_cost + note_cost + MIN_NEWEST_TOKENS
    floor = min(full.cost, head)  # all of a small message, a head and the note of a big one
    if room - system.cost < floor:
        system = _shrink_system(system, room - floor, counter)
    if system.cost + full.cost <= room:
        return system, full, True
    max_cost = room - system.cost
    return system, _shorten_newest(newest, prefix, max_cost, counter, shortened_note), True


class _PrefixCosts:
    """Speaker prefixes and their token counts, each counted once per ``known``
    (a memo's labels, kept across calls, or this call's own)."""

    def __init__(
        self, counter: TokenCounter, group: bool, known: dict[_SpeakerKey, _Label] | None
    ) -> None:
        self._counter = counter
        self._group = group
        self._known: dict[_SpeakerKey, _Label] = {} if known is None else known

    def get(self, turn: Turn) -> _Label:
        if not self._group or turn.role != "user":
            return "", 0
        raw = (turn.author_name, turn.author_id)
        known = self._known.get(raw)
        if known is None:
            prefix = _prefix(turn.author_name or turn.author_id or "")
            known = self._known[raw] = (prefix, self._counter.count(prefix))
        return known


def _prefix(raw: str) -> str:
    """ "Name: " for a raw author name."""
    name = _WHITESPACE.sub(" ", raw).strip()[:MAX_NAME_CHARS].strip()
    return f"{name}: " if name else ""


def _system_part(system_prompt: str, group: bool, counter: TokenCounter) -> _Part:
    text = system_prompt.strip()
    if group:
        text = f"{text}\n\n{GROUP_SYSTEM_LINE}" if text else GROUP_SYSTEM_LINE
    if not text:
        return _Part("system", "", 0)
    return _Part("system", text, counter.count(text) + MESSAGE_OVERHEAD_TOKENS)


def _shrink_system(system: _Part, max_cost: int, counter: TokenCounter) -> _Part:
    """Cut the system prompt to ``max_cost``; leave it out if not even a token fits."""
    text = counter.truncate(system.content, max_cost - MESSAGE_OVERHEAD_TOKENS)
    if not text:
        return _Part("system", "", 0)
    return _Part("system", text, counter.count(text) + MESSAGE_OVERHEAD_TOKENS)


def _note(shortened_note: str, removed: int) -> str:
    return NOTE_SEPARATOR + shortened_note.format(removed=removed)


def _shorten_newest(
    newest: Turn,
    prefix: _Label,
    max_cost: int,
    counter: TokenCounter,
    shortened_note: str,
) -> _Part:
    """Keep the beginning of the newest message plus a visible note, within ``max_cost``."""
    prefix_text, prefix_cost = prefix
    fixed = MESSAGE_OVERHEAD_TOKENS + prefix_cost
    # The note's length depends on the number it shows; start from the largest it can be.
    keep = max_cost - fixed - counter.count(_note(shortened_note, newest.tokens))
    content, cost = "", max_cost + 1
    for _ in range(MAX_FIT_ATTEMPTS):
        kept = counter.truncate(newest.content, keep)
        kept_tokens = counter.count(kept)
        content = kept + _note(shortened_note, max(newest.tokens - kept_tokens, 0))
        cost = fixed + counter.count(content)
        if cost <= max_cost or keep <= 0:
            break
        keep = max(keep - (cost - max_cost), 0)
    if cost > max_cost:
        # Not even the note fits: plain text is still better than an error.
        content = counter.truncate(newest.content, max(max_cost - fixed, 1))
        cost = fixed + counter.count(content)
    return _Part(newest.role, prefix_text + content, cost)


def _fit_history(
    older: Sequence[Turn], room: int, prefixes: _PrefixCosts, known: _Known
) -> tuple[list[ChatMessage], int, int]:
    """Newest-first, keep whole turns while they fit; everything before the first misfit
    goes. The kept messages, their cost, and how many turns were dropped.

    Runs for every history turn of every answer: a turn's message is built once
    and found in ``known`` (by turn id) after that.
    """
    kept: list[ChatMessage] = []
    costs: list[int] = []
    left = 0  # turns before the first misfit
    for index in range(len(older) - 1, -1, -1):
        turn = older[index]
        entry = known.get(turn.id)
        if entry is None:
            entry = _history_entry(turn, prefixes)
            if turn.id:  # 0: not stored, no key
                known.put(turn.id, entry)
        message, cost = entry
        if message is None:
            continue
        if cost > room:
            left = index + 1
            break
        kept.append(message)
        costs.append(cost)
        room -= cost
    kept.reverse()
    costs.reverse()
    dropped = sum(1 for t in older[:left] if not _blank(t.content))
    if dropped:
        # The cut fell inside an exchange: an answer without its question misleads,
        # and templates of some local servers insist the history starts with a user.
        # (_fit_run does the same.)
        while kept and kept[0]["role"] == "assistant":
            kept.pop(0)
            costs.pop(0)
            dropped += 1
    return kept, sum(costs), dropped


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


def _fit_run(run: _Run, room: int) -> tuple[list[ChatMessage], int, int]:
    """:func:`_fit_history` on a run: the longest stretch of newest turns within
    ``room`` (costs are never negative), found by a binary search on the totals."""
    sums, counts = run.cost_sums, run.count_sums
    room = max(room, 0)  # a system prompt and message that overflow leave no room, not less
    if sums[-1] - sums[0] <= room:  # the common case: all of it fits
        return run.messages, sums[-1] - sums[0], 0
    start = bisect.bisect_left(sums, sums[-1] - room)  # the first turn kept
    dropped = counts[start] - counts[0]
    kept = run.messages[dropped:]
    cost = sums[-1] - sums[start]
    skip = 0  # leading answers dropped too, as in _fit_history
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
    prefixes: _PrefixCosts,
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
            entry = _history_entry(turn, prefixes)
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


def _history_entry(turn: Turn, prefixes: _PrefixCosts) -> _Entry:
    if _blank(turn.content):
        return None, 0  # an empty turn says nothing and some servers reject it
    prefix, prefix_cost = prefixes.get(turn)
    message = {"role": turn.role, "content": prefix + turn.content}
    return message, turn.tokens + prefix_cost + MESSAGE_OVERHEAD_TOKENS


def _blank(text: str) -> bool:
    """Empty or only whitespace (``not text.strip()``, without copying the text)."""
    return not text or text.isspace()
