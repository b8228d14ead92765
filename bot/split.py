"""Split a long answer into messages that fit a platform's length limit.

Nothing is dropped or reordered: the bodies of the parts concatenate to the
input. A part that ends inside a code fence is closed with a suffix and the next
part reopens the fence (with the same language tag) in a prefix, so each message
renders on its own.

Cut points depend only on the text up to the cut window, so a streamer can call
:func:`take_part` on a growing text and freeze parts that never change later:
streaming the text piece by piece yields exactly :func:`split_text` of the whole.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_MARKER = 16  # longer fence markers are left as they are (no repair)
MAX_INFO = 32  # a reopened fence keeps at most this much of its language tag
MIN_REPAIR_LEN = 80  # below this limit the fence overhead would crowd out the text
FENCE_RESERVE = 1 + MAX_MARKER  # the longest closing suffix: "\n" + marker
HARD_CUT_LOOKBACK = 8  # how far a hard cut may step back to keep a character whole

_FENCE_RE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_PARAGRAPH_RE = re.compile(r"\n(?:[ \t\r]*\n)+")
_JOINERS = frozenset("\u200d\ufe0e\ufe0f")  # ZWJ and variation selectors bind to neighbours


@dataclass(frozen=True, slots=True)
class Part:
    """One message of a split answer: ``body`` is a slice of the answer."""

    prefix: str
    body: str
    suffix: str

    def render(self) -> str:
        """The message text as posted."""
        return self.prefix + self.body + self.suffix


@dataclass(frozen=True, slots=True)
class Fence:
    """An open code fence: its marker (```` ``` ````, ``~~~~``...) and language tag."""

    marker: str
    info: str = ""

    def opener(self) -> str:
        """The line that reopens this fence at the start of the next part."""
        return f"{self.marker}{self.info[:MAX_INFO]}\n"

    def closer(self, body: str) -> str:
        """The suffix that closes this fence at the end of a part ending in ``body``;
        a body that ends its line gets no second newline (a blank line in the code)."""
        return self.marker if body.endswith("\n") else "\n" + self.marker


def split_text(text: str, max_len: int) -> list[Part]:
    """Split ``text`` into parts whose rendered length is at most ``max_len``."""
    parts: list[Part] = []
    start = 0
    fence: Fence | None = None
    while start < len(text):
        taken = take_part(text, max_len, fence, start=start)
        if taken is None:
            parts.append(last_part(text, max_len, fence, start))
            break
        part, start, fence = taken
        parts.append(part)
    return parts


def take_part(
    text: str,
    max_len: int,
    fence: Fence | None = None,
    *,
    start: int = 0,
    min_end: int = 0,
) -> tuple[Part, int, Fence | None] | None:
    """Freeze the first part of ``text[start:]`` if the rest no longer fits one message.

    ``fence`` is the fence open at ``start`` (from the previous call). Returns
    ``(part, end, fence_at_end)``, or None while the rest still fits. The cut
    never falls before ``min_end`` (text a native stream already shows), provided
    ``min_end <= start + max_len - len(prefix) - suffix_reserve(max_len)``.
    """
    _check_limit(max_len)
    prefix = part_prefix(fence, max_len)
    budget = max_len - len(prefix)
    if len(text) - start <= budget:
        return None
    cut, after, suffix = start, fence, ""
    # First try the whole window; if a closing suffix is needed and does not
    # fit, shrink the window by the longest possible suffix (always fits).
    for reserve in (0, FENCE_RESERVE):
        end = max(start + 1, start + budget - reserve)
        floor = min(max(start + 1, min_end), end)
        cut = _choose_cut(text, start, end, floor)
        cut = _avoid_fence_split(text, start, cut, floor, fence)
        after = fence_at(text, start, cut, fence)
        suffix = after.closer(text[start:cut]) if after and _repairs(after, max_len) else ""
        if len(prefix) + (cut - start) + len(suffix) <= max_len:
            break
    return Part(prefix, text[start:cut], suffix), cut, after


def last_part(text: str, max_len: int, fence: Fence | None, start: int) -> Part:
    """The remainder ``text[start:]`` as the final part (no closing suffix)."""
    return Part(part_prefix(fence, max_len), text[start:], "")


def part_prefix(fence: Fence | None, max_len: int) -> str:
    """The prefix a part starting inside ``fence`` gets."""
    return fence.opener() if fence is not None and _repairs(fence, max_len) else ""


def suffix_reserve(max_len: int) -> int:
    """Room a streamer must leave free so a closing suffix can still be added."""
    return FENCE_RESERVE if max_len >= MIN_REPAIR_LEN else 0


def fence_at(text: str, start: int, end: int, fence: Fence | None) -> Fence | None:
    """The fence open after the complete lines of ``text[start:end]``.

    ``fence`` is the state at ``start``. A line continuing from before ``start``
    was already judged by the previous part and is skipped; an unfinished last
    line is not judged yet.
    """
    pos = start
    if start > 0 and text[start - 1] != "\n":
        newline = text.find("\n", start, end)
        if newline < 0:
            return fence
        pos = newline + 1
    while (newline := text.find("\n", pos, end)) >= 0:
        fence = _fence_line(text[pos:newline], fence)
        pos = newline + 1
    return fence


def fence_at_end(text: str, start: int, fence: Fence | None) -> Fence | None:
    """Like :func:`fence_at` up to the end, judging an unfinished last line too."""
    state = fence_at(text, start, len(text), fence)
    newline = text.rfind("\n", start)
    if newline >= 0:
        last = text[newline + 1 :]
    elif start == 0 or text[start - 1] == "\n":
        last = text[start:]
    else:
        return state  # the only line began in an earlier part
    return _fence_line(last, state) if last else state


def fence_like(line_start: str) -> bool:
    """Whether an unfinished line might still become a fence line."""
    indent = len(line_start) - len(line_start.lstrip(" "))
    if indent > 3:
        return False
    rest = line_start[indent:]
    return rest[:3] in ("```", "~~~") or rest in ("", "`", "``", "~", "~~")


def _check_limit(max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")


def _repairs(fence: Fence, max_len: int) -> bool:
    """Whether a fence open at a cut is closed and reopened around it."""
    return len(fence.marker) <= MAX_MARKER and max_len >= MIN_REPAIR_LEN


def _fence_line(line: str, fence: Fence | None) -> Fence | None:
    """Apply one complete line to the fence state (CommonMark rules, simplified)."""
    match = _FENCE_RE.fullmatch(line.removesuffix("\r"))
    if match is None:
        return fence
    marker, info = match.group(1), match.group(2).strip()
    if fence is None:
        if marker[0] == "`" and "`" in info:
            return None  # inline code such as ```a``` is not a fence
        return Fence(marker, info)
    if marker[0] == fence.marker[0] and len(marker) >= len(fence.marker) and not info:
        return None
    return fence


def _choose_cut(text: str, start: int, end: int, floor: int) -> int:
    """Pick a cut in ``[floor, end]``: paragraph, line, space, then anywhere."""
    if floor >= end:
        return end
    # Only boundaries in the second half of the window count, so parts stay large.
    low = max(floor, start + (end - start) // 2)
    cut = _after_paragraph(text, start, low, end)
    if cut is None:
        cut = _after_newline(text, low, end)
    if cut is None:
        cut = _after_space(text, low, end)
    if cut is None:
        cut = _hard_cut(text, floor, end)
    return cut


def _after_paragraph(text: str, start: int, low: int, end: int) -> int | None:
    best = None
    for match in _PARAGRAPH_RE.finditer(text, start, end):
        if match.end() >= low:
            best = match.end()
    return best


def _after_newline(text: str, low: int, end: int) -> int | None:
    index = text.rfind("\n", low - 1, end)
    return index + 1 if index >= 0 else None


def _after_space(text: str, low: int, end: int) -> int | None:
    for cut in range(end, low - 1, -1):
        if text[cut - 1].isspace() and not _bad_cut(text, cut):
            return cut
    return None


def _hard_cut(text: str, floor: int, end: int) -> int:
    for cut in range(end, max(floor, end - HARD_CUT_LOOKBACK) - 1, -1):
        if not _bad_cut(text, cut):
            return cut
    return end


def _bad_cut(text: str, cut: int) -> bool:
    """Whether cutting between ``text[cut-1]`` and ``text[cut]`` breaks a character."""
    if cut <= 0 or cut >= len(text):
        return False
    before, after = text[cut - 1], text[cut]
    if before == "\r" and after == "\n":
        return True
    if "\ud800" <= before <= "\udbff" and "\udc00" <= after <= "\udfff":
        return True
    if after in _JOINERS or before == "\u200d" or "\u1160" <= after <= "\u11ff":
        return True  # joiners, and Hangul vowel/final jamo that attach to the syllable
    return unicodedata.combining(after) != 0


def _avoid_fence_split(text: str, start: int, cut: int, floor: int, fence: Fence | None) -> int:
    """Move a cut off a fence line, and off the end of a line that opens a fence."""
    line_start = text.rfind("\n", 0, cut) + 1
    if line_start < cut:
        if line_start >= floor and fence_like(text[line_start:cut]):
            return line_start
        return cut
    previous = text.rfind("\n", 0, cut - 1) + 1
    if previous >= floor:
        state = fence_at(text, start, previous, fence)
        if state is None and _fence_line(text[previous : cut - 1], None) is not None:
            return previous  # the part would end with an empty, just-opened block
    return cut
