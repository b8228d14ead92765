"""The pieces a prompt is built from, with their token costs.

Shared by the plain walk (``bot/context.py``) and the memo that reuses them
between answers (``bot/history_memo.py``); neither owns them, so both import
them from here and neither imports the other's internals. Pure: no I/O, no
state besides the label dict a caller hands in.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol

from bot.tokens import TokenCounter
from bot.types import ChatMessage, Turn

MESSAGE_OVERHEAD_TOKENS = 4  # role and separators the API wraps around every message
MAX_NAME_CHARS = 40  # a speaker name is a label, not a place for text
GROUP_SYSTEM_LINE = (
    "Several people talk in this conversation: each user message starts with the "
    'speaker\'s name, like "Name: message".'
)

_WHITESPACE = re.compile(r"\s+")


class Part(NamedTuple):
    """The system prompt or the newest message, with its cost (content + prefix +
    overhead). History turns become message dicts directly (:func:`history_entry`)."""

    role: str
    content: str
    cost: int

    def message(self) -> ChatMessage:
        return {"role": self.role, "content": self.content}


# A history turn as the model sees it: its message (None for a blank turn, which
# is left out) and its cost in prompt tokens.
Entry = tuple[ChatMessage | None, int]
Label = tuple[str, int]  # a speaker's "Name: " and its cost
SpeakerKey = tuple[str | None, str | None]  # (author_name, author_id)


class Entries(Protocol):
    """History entries by stored turn id: one call's own, or a memo's (bounded)."""

    def get(self, turn_id: int, /) -> Entry | None: ...

    def put(self, turn_id: int, entry: Entry) -> None: ...


class PrefixCosts:
    """Speaker prefixes and their token counts, each counted once per ``known``
    (a memo's labels, kept across calls, or this call's own)."""

    def __init__(
        self, counter: TokenCounter, group: bool, known: dict[SpeakerKey, Label] | None
    ) -> None:
        self._counter = counter
        self._group = group
        self._known: dict[SpeakerKey, Label] = {} if known is None else known

    def get(self, turn: Turn) -> Label:
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


def system_part(system_prompt: str, group: bool, counter: TokenCounter) -> Part:
    """The system prompt as sent (with the group line in groups) and its cost."""
    text = system_prompt.strip()
    if group:
        text = f"{text}\n\n{GROUP_SYSTEM_LINE}" if text else GROUP_SYSTEM_LINE
    if not text:
        return Part("system", "", 0)
    return Part("system", text, counter.count(text) + MESSAGE_OVERHEAD_TOKENS)


def history_entry(turn: Turn, prefixes: PrefixCosts) -> Entry:
    """A history turn's message and cost; no message for a blank turn."""
    if blank(turn.content):
        return None, 0  # an empty turn says nothing and some servers reject it
    prefix, prefix_cost = prefixes.get(turn)
    message: ChatMessage = {"role": turn.role, "content": prefix + turn.content}
    if turn.tools is not None:  # its tool calls and results (bot/tool_use.py)
        message["tools"] = turn.tools
    return message, turn.tokens + prefix_cost + MESSAGE_OVERHEAD_TOKENS


def blank(text: str) -> bool:
    """Empty or only whitespace (``not text.strip()``, without copying the text)."""
    return not text or text.isspace()
