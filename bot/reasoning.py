"""Reasoning ("thinking") models: which request fields they take, and hiding their thoughts.

Two jobs, both pure (no I/O):

* :func:`request_shape` decides how a request to a model looks. OpenAI's o-series and
  gpt-5 reject ``max_tokens`` and ``temperature`` and accept ``reasoning_effort``;
  DeepSeek-R1 style models ignore ``temperature``. The model name decides under
  ``openai.reasoning: auto``; ``on``/``off`` override it. A server's 400 still corrects
  a wrong guess (bot/llm.py drops the rejected field once and remembers it).
* :class:`ThinkStripper` removes ``<think>…</think>`` from a content stream, also when a
  tag is split across chunks, so the thinking is never shown nor stored as the answer.
  What it removed is kept, bounded, for ``openai.show_reasoning``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ReasoningMode = Literal["auto", "on", "off"]
ReasoningEffort = Literal["", "minimal", "low", "medium", "high"]

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
# Kept of a model's thinking for show_reasoning: more is never shown anyway.
MAX_KEPT_REASONING_CHARS = 4000
# Names of models that think before answering, after an optional "vendor/" prefix:
# OpenAI o1/o3/o4-mini..., gpt-5*, DeepSeek-R1 and its distills, deepseek-reasoner, QwQ.
_REASONING_NAME = re.compile(
    r"(?:^|/)(?:o\d(?:$|[-_.])|gpt-5|deepseek-r1|deepseek-reasoner|qwq|r1-distill)", re.I
)


def is_reasoning_model(model: str, mode: ReasoningMode = "auto") -> bool:
    """Whether ``model`` is treated as a reasoning model (``mode`` overrides the name)."""
    if mode != "auto":
        return mode == "on"
    return _REASONING_NAME.search(model) is not None


@dataclass(frozen=True, slots=True)
class RequestShape:
    """The fields a request starts with; bot/llm.py may drop one a server rejects."""

    completion_tokens: bool  # max_completion_tokens rather than max_tokens
    temperature: bool
    effort: ReasoningEffort  # "": not sent


def request_shape(
    model: str, mode: ReasoningMode, effort: ReasoningEffort, *, openai_host: bool
) -> RequestShape:
    """How to ask ``model``. Non-reasoning models keep the host's usual token field
    (see bot/llm.py: most compatible servers ignore ``max_completion_tokens``)."""
    if not is_reasoning_model(model, mode):
        return RequestShape(completion_tokens=openai_host, temperature=True, effort="")
    return RequestShape(completion_tokens=True, temperature=False, effort=effort)


@dataclass(frozen=True, slots=True)
class Split:
    """One piece of stream: what is shown, and what was thinking."""

    visible: str
    thinking: str


class ThinkStripper:
    """Removes ``<think>…</think>`` spans from a stream of text pieces.

    A piece that ends with the start of a tag (``"<thi"``) is held back until the next
    piece shows whether it is one; ``finish`` releases what is still held. An opening
    tag that never closes hides the rest of the answer: that is thinking cut short.
    """

    def __init__(self) -> None:
        self._inside = False
        self._held = ""
        self._kept: list[str] = []
        self._kept_chars = 0

    @property
    def thinking(self) -> str:
        """The thinking removed so far (its first MAX_KEPT_REASONING_CHARS)."""
        return "".join(self._kept)

    def keep(self, thought: str) -> None:
        """Record thinking that arrived outside the content (reasoning delta fields)."""
        room = MAX_KEPT_REASONING_CHARS - self._kept_chars
        if room > 0 and thought:
            self._kept.append(thought[:room])
            self._kept_chars += min(room, len(thought))

    def feed(self, piece: str) -> Split:
        """The visible and thinking parts of ``piece`` (plus anything held before it)."""
        if not self._inside and not self._held and "<" not in piece:
            return Split(piece, "")  # the usual chunk: nothing to look at
        text = self._held + piece
        self._held = ""
        visible: list[str] = []
        thinking: list[str] = []
        while text:
            tag = CLOSE_TAG if self._inside else OPEN_TAG
            at = text.find(tag)
            if at < 0:
                keep = _partial_tag_length(text, tag)
                body, self._held = text[: len(text) - keep], text[len(text) - keep :]
                (thinking if self._inside else visible).append(body)
                break
            (thinking if self._inside else visible).append(text[:at])
            text = text[at + len(tag) :]
            self._inside = not self._inside
        thought = "".join(thinking)
        self.keep(thought)
        return Split("".join(visible), thought)

    def finish(self) -> Split:
        """What is still held at the end of the stream."""
        held, self._held = self._held, ""
        if self._inside:
            self.keep(held)
            return Split("", held)
        return Split(held, "")


def _partial_tag_length(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``tag``."""
    for length in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0


def summary(thinking: str, max_chars: int) -> str:
    """A one-paragraph, bounded form of ``thinking`` for show_reasoning."""
    flat = " ".join(thinking.split())
    if len(flat) <= max_chars:
        return flat
    return flat[: max_chars - 1].rstrip() + "…"
