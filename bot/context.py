"""Build the prompt for one answer: trim the history by tokens, never by count.

No I/O, no clock. Stored turns carry their token count (counted once when
stored), so trimming a long history costs no tokenizing; only text that is
shortened here, the system prompt and the short speaker prefixes are counted.
Without a memo a build is pure; with one (``bot/history_memo.py``) it reads and
updates the memo, and still returns exactly what a build without it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.history_memo import HistoryMemo
from bot.prompt_parts import (
    MESSAGE_OVERHEAD_TOKENS,
    Entries,
    Entry,
    Label,
    Part,
    PrefixCosts,
    blank,
    history_entry,
    system_part,
)
from bot.tokens import TokenCounter
from bot.tool_use import expand_tool_turns
from bot.types import ChatMessage, Turn

REPLY_PRIMING_TOKENS = 3  # the API opens the assistant's reply inside the prompt
MIN_NEWEST_TOKENS = 32  # what is kept of the newest message even if the system prompt shrinks
MAX_FIT_ATTEMPTS = 4  # shortening re-checks its own result; converges in one or two
NOTE_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class ContextStats:
    """What trimming did, for logs and usage accounting."""

    dropped_turns: int  # older turns left out to fit the budget
    prompt_tokens: int  # our estimate of the prompt's size
    shortened: bool  # the newest message or the system prompt was cut


class _OneCall(dict[int, Entry]):
    """History entries of one build without a memo: unbounded, gone with the call."""

    def put(self, turn_id: int, entry: Entry) -> None:
        self[turn_id] = entry


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
    prefixes = PrefixCosts(counter, group, None if memo is None else memo.labels())
    room = budget - REPLY_PRIMING_TOKENS

    if memo is None:
        system = system_part(system_prompt, group, counter)
    else:
        system = memo.system_part(system_prompt, group, counter)
    system, newest_part, shortened = _fit_system_and_newest(
        system, newest, prefixes.get(newest), room, counter, shortened_note
    )
    room_left = room - system.cost - newest_part.cost
    fitted = None
    if memo is not None and key is not None:
        fitted = memo.fit(key, group, older, prefixes, room_left)
    if fitted is None:
        known: Entries = _OneCall() if memo is None else memo.entries(group)
        fitted = _fit_history(older, room_left, prefixes, known)
    kept, kept_cost, dropped = fitted
    messages = ([system.message()] if system.content else []) + kept + [newest_part.message()]
    messages = expand_tool_turns(messages)
    stats = ContextStats(
        dropped_turns=dropped,
        prompt_tokens=REPLY_PRIMING_TOKENS + system.cost + kept_cost + newest_part.cost,
        shortened=shortened,
    )
    return messages, stats


def _fit_system_and_newest(
    system: Part,
    newest: Turn,
    prefix: Label,
    room: int,
    counter: TokenCounter,
    shortened_note: str,
) -> tuple[Part, Part, bool]:
    """Make the system prompt and the newest message fit ``room`` together.

    The newest message gives way first; the system prompt is cut only when even
    a head of the newest message (plus the note) would not fit beside it.
    """
    prefix_text, prefix_cost = prefix
    full = Part(
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


def _shrink_system(system: Part, max_cost: int, counter: TokenCounter) -> Part:
    """Cut the system prompt to ``max_cost``; leave it out if not even a token fits."""
    text = counter.truncate(system.content, max_cost - MESSAGE_OVERHEAD_TOKENS)
    if not text:
        return Part("system", "", 0)
    return Part("system", text, counter.count(text) + MESSAGE_OVERHEAD_TOKENS)


def _note(shortened_note: str, removed: int) -> str:
    return NOTE_SEPARATOR + shortened_note.format(removed=removed)


def _shorten_newest(
    newest: Turn,
    prefix: Label,
    max_cost: int,
    counter: TokenCounter,
    shortened_note: str,
) -> Part:
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
    return Part(newest.role, prefix_text + content, cost)


def _fit_history(
    older: Sequence[Turn], room: int, prefixes: PrefixCosts, known: Entries
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
            entry = history_entry(turn, prefixes)
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
    dropped = sum(1 for t in older[:left] if not blank(t.content))
    if dropped:
        # The cut fell inside an exchange: an answer without its question misleads,
        # and templates of some local servers insist the history starts with a user.
        # (the memo's binary search, bot/history_memo.py, does the same.)
        while kept and kept[0]["role"] == "assistant":
            kept.pop(0)
            costs.pop(0)
            dropped += 1
    return kept, sum(costs), dropped
