"""What to write next while one answer streams: one pure planner per delivery mode.

``bot.delivery.ReplyStream`` keeps the answer and the state of the message that
shows it in an :class:`Answer`; at every turn it hands it (as :class:`Progress`,
read only) to the planner of its :class:`Mode` and gets back the next
:class:`Step` (or None: nothing to write yet). Planners never await, never
change what they read and never touch a sink, so they can be tested on plain
values; the stream's executor performs the step through the sink, with pacing
and coalescing, and records what it showed (:meth:`Answer.shown_by`).

* native (:func:`plan_native`): the platform streams; open with the text so far,
  append as safe text arrives, stop with the rest (and a note);
* edit (:func:`plan_edit`): post the first text, then edit the message;
* parts (:func:`plan_parts`): post each part once it is complete.

In every mode a part that reaches the platform's limit is frozen (``Step.frozen``)
and the next text starts a new message (:func:`bot.split.take_part`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Protocol

from .split import (
    Fence,
    Part,
    fence_at_end,
    fence_like,
    last_part,
    part_prefix,
    suffix_reserve,
    take_part,
)
from .types import PlatformLimits

NOTE_GAP_LINES = 2  # newlines between a partial answer and a failure note
HIGH_SURROGATES = ("\ud800", "\udbff")  # first half of a pair kept as UTF-16

Frozen = tuple[Part, int, Fence | None]  # a finished part, where it ends, fence open there


class Mode(Enum):
    """How an answer is shown while it streams, and the write that completes a message."""

    NATIVE = ("native", "stop")  # the platform streams (stream_start / append / stop)
    EDIT = ("edit", "edit")  # one message, edited as text arrives
    PARTS = ("parts", None)  # each part posted when complete, never edited

    # Plain attributes, not properties: the writer reads them at every step.
    def __init__(self, label: str, final_token: str | None) -> None:
        self.label = label  # for logs
        self.final_token = final_token  # the kind of write that completes a message


class Op(Enum):
    """The kind of write a step makes, and how it is paced."""

    SEND = ("send", True, False)  # post a new message
    EDIT = ("edit", False, True)  # replace the text of the open message
    START = ("start", True, False)  # open a native stream with its first text
    APPEND = ("append", False, True)  # add text to the open native stream
    CLOSE = ("close", False, True)  # end the native stream with its part's last text
    STOP = ("stop", False, False)  # end the native stream with the answer's last text
    SKIP = ("skip", False, False)  # no write: the part is complete, shows nothing new

    def __init__(self, label: str, opens: bool, spaced: bool) -> None:
        self.label = label  # for logs
        self.opens = opens  # makes a new message appear (the reader waits for it)
        self.spaced = spaced  # writes to an existing message (min_edit_interval apart)
        # The kind of write ``pace_for(op)`` is asked about: CLOSE is a stream stop.
        self.token = "stop" if label == "close" else label


@dataclass(frozen=True, slots=True)
class Step:
    """The next write and what it completes."""

    op: Op
    text: str = ""
    frozen: Frozen | None = None  # the part this step completes
    shown_end: int = 0  # native: how far into ``buf`` the stream shows afterwards
    with_note: bool = False  # the failure note is part of this write


class Progress(Protocol):
    """What a planner reads: the unfinished answer and the message showing it.

    ``Answer`` is one; planners only read it (no snapshot copy: they run at
    every step).
    """

    @property
    def buf(self) -> str:
        """The text from one character before the part in progress."""

    @property
    def start(self) -> int:
        """Where the part in progress begins in ``buf``."""

    @property
    def fence(self) -> Fence | None:
        """The code fence open at ``start``."""

    @property
    def max_len(self) -> int:
        """The platform's longest message."""

    @property
    def open(self) -> bool:
        """A message (or stream) shows the part in progress."""

    @property
    def shown(self) -> str:
        """send/edit: the text that message shows."""

    @property
    def shown_end(self) -> int:
        """native: how far into ``buf`` the open stream shows."""

    @property
    def closing(self) -> bool:
        """The answer is complete (finish, fail or a note)."""

    @property
    def note(self) -> str | None:
        """A note to show after the answer."""

    @property
    def note_shown(self) -> bool:
        """The note went out already."""


class Answer:
    """The answer so far and what its open message shows; one per ``ReplyStream``.

    Kept as the bodies of the frozen parts plus a working buffer that starts one
    character before the part in progress (so pushes copy little). Only
    :meth:`shown_by` and :meth:`complete` move it on, after a write went out.
    """

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.done = ""  # bodies of the frozen parts
        self.buf = ""
        self.start = 0  # where the part in progress begins in buf
        self.fence: Fence | None = None  # fence open at start
        self.parts: list[Part] = []
        self.msg_id: str | None = None  # message/stream showing the current part
        self.shown = ""  # its text (send/edit)
        self.shown_end = 0  # native: buf index the open stream shows up to
        self.note: str | None = None
        self.note_shown = False
        self.closing = False

    @property
    def text(self) -> str:
        """Everything pushed so far."""
        return self.done + self.buf[self.start :]

    @property
    def pending(self) -> bool:
        """Whether text after the frozen parts is waiting to be frozen."""
        return self.start < len(self.buf)

    @property
    def open(self) -> bool:
        """A message (or stream) shows the part in progress."""
        return self.msg_id is not None

    def shown_by(self, step: Step, msg_id: str | None) -> None:
        """Record that ``step`` was written (``msg_id``: the message SEND/START made)."""
        if step.op in (Op.SEND, Op.START):
            self.msg_id = msg_id
        if step.op in (Op.SEND, Op.EDIT):
            self.shown = step.text
        elif step.op is not Op.SKIP:
            self.shown_end = step.shown_end
        self.note_shown = self.note_shown or step.with_note
        if step.frozen is not None:
            self.complete(step.frozen)

    def complete(self, frozen: Frozen) -> None:
        """The part ``frozen`` is shown in full: the next text opens a new message."""
        part, end, fence = frozen
        self.parts.append(part)
        self.done += part.body
        keep = max(0, end - 1)  # one character of context tells whether a line continues
        self.buf = self.buf[keep:]
        self.start = self.shown_end = end - keep
        self.fence = fence
        self.msg_id, self.shown = None, ""

    def end(self) -> None:
        """The writer stopped: count the text not frozen as the last part."""
        if self.pending:
            self.parts.append(last_part(self.buf, self.max_len, self.fence, self.start))


def initial_mode(limits: PlatformLimits, native: bool) -> Mode:
    """The mode for a sink with ``limits`` (``native``: it has the stream methods)."""
    if not limits.stream:
        return Mode.PARTS
    if limits.native_stream and native:
        return Mode.NATIVE
    return fallback_mode(limits)


def fallback_mode(limits: PlatformLimits) -> Mode:
    """The mode when native streaming is not available."""
    return Mode.EDIT if limits.can_edit else Mode.PARTS


def plan_edit(p: Progress) -> Step | None:
    """Edit mode: send the first text, then edit; a full part freezes the message."""
    op = Op.EDIT if p.open else Op.SEND
    taken = _take(p)
    if taken is not None:
        return _freeze_step(p, taken, op)
    if p.closing and p.note_shown:
        return None  # the last write carried the note; the text cannot grow any more
    render = _last(p).render()
    if p.closing:
        shown, with_note = _with_note(p, render)
    else:
        shown, with_note = _with_closed_fence(p, render), False
    if not shown.strip() or shown == p.shown:
        return None
    return Step(op, shown, with_note=with_note)


def plan_parts(p: Progress) -> Step | None:
    """Parts mode: post each complete part; the rest once the answer is complete."""
    taken = _take(p)
    if taken is not None:
        return _freeze_step(p, taken, Op.SEND)
    if not p.closing or p.start >= len(p.buf):
        return None
    return _final_send(p)


def plan_native(p: Progress) -> Step | None:
    """Native mode: start, append safe text, stop with the rest (and the note)."""
    taken = _take(p, min_end=p.shown_end)
    if taken is not None:
        if not p.open:
            return _freeze_step(p, taken, Op.SEND)
        part, cut, _ = taken
        return Step(Op.CLOSE, p.buf[p.shown_end : cut] + part.suffix, frozen=taken)
    if not p.open:
        if p.closing:  # the rest is complete: one plain message will do
            return _final_send(p) if p.start < len(p.buf) else None
        end = native_safe_end(p)
        render = part_prefix(p.fence, p.max_len) + p.buf[p.start : end]
        return Step(Op.START, render, shown_end=end) if render.strip() else None
    if not p.closing:
        end = native_safe_end(p)
        if end > p.shown_end:
            return Step(Op.APPEND, p.buf[p.shown_end : end], shown_end=end)
        return None
    # The rest of the text (and a failure note) goes with the stop: one final write.
    end = len(p.buf)
    tail = _note_tail(p, _last(p).render())
    rest = p.buf[p.shown_end : end] + tail
    return Step(Op.STOP, rest, frozen=_rest_frozen(p), shown_end=end, with_note=bool(tail))


PLANNERS: Mapping[Mode, Callable[[Progress], Step | None]] = MappingProxyType(
    {Mode.NATIVE: plan_native, Mode.EDIT: plan_edit, Mode.PARTS: plan_parts}
)


def native_safe_end(p: Progress) -> int:
    """How far a native stream may show the answer without risking a later cut."""
    text, start, limit = p.buf, p.start, p.max_len
    room = limit - len(part_prefix(p.fence, limit)) - suffix_reserve(limit)
    end = min(len(text), start + room)
    line_start = text.rfind("\n", 0, end) + 1
    if line_start < end and fence_like(text[line_start:end]):
        end = line_start  # wait until a possible fence line is complete
    low, high = HIGH_SURROGATES
    if end > start and (text[end - 1] == "\r" or low <= text[end - 1] <= high):
        end -= 1  # keep "\r\n" and surrogate pairs together
    return max(end, p.shown_end)


def closing_line(render: str, fence: Fence) -> str:
    """Close ``fence`` after ``render`` for display, without adding a blank line."""
    return fence.marker if render.endswith("\n") else "\n" + fence.marker


def _take(p: Progress, min_end: int = 0) -> Frozen | None:
    return take_part(p.buf, p.max_len, p.fence, start=p.start, min_end=min_end)


def _last(p: Progress) -> Part:
    return last_part(p.buf, p.max_len, p.fence, p.start)


def _freeze_step(p: Progress, taken: Frozen, op: Op) -> Step:
    render = taken[0].render()
    if not render.strip() or (op is Op.EDIT and render == p.shown):
        return Step(Op.SKIP, frozen=taken)  # nothing new to show for this part
    return Step(op, render, frozen=taken)


def _final_send(p: Progress) -> Step:
    shown, with_note = _with_note(p, _last(p).render())
    if not shown.strip():
        return Step(Op.SKIP, frozen=_rest_frozen(p))
    return Step(Op.SEND, shown, frozen=_rest_frozen(p), with_note=with_note)


def _rest_frozen(p: Progress) -> Frozen:
    return _last(p), len(p.buf), _fence_at_end(p)


def _fence_at_end(p: Progress) -> Fence | None:
    # Judge the unfinished last line too: the answer ends (or pauses) there.
    return fence_at_end(p.buf, p.start, p.fence)


def _with_closed_fence(p: Progress, render: str) -> str:
    """While streaming, close an open code block so the message renders well."""
    fence = _fence_at_end(p)
    if fence is None:
        return render
    closed = render + closing_line(render, fence)
    return closed if len(closed) <= p.max_len else render


def _with_note(p: Progress, render: str) -> tuple[str, bool]:
    tail = _note_tail(p, render)
    return (render + tail, True) if tail else (render, False)


def _note_tail(p: Progress, render: str) -> str:
    """Text that appends the note to ``render``, or "" if it does not fit."""
    if p.note is None or p.note_shown or not render.strip():
        return ""
    fence = _fence_at_end(p)
    closer = closing_line(render, fence) if fence else ""
    body = render + closer
    trailing = len(body) - len(body.rstrip("\n"))
    tail = closer + "\n" * max(0, NOTE_GAP_LINES - trailing) + p.note
    return tail if len(render) + len(tail) <= p.max_len else ""
