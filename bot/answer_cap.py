"""How many platform messages an answer takes, counted while it streams.

A model can write far more than any chat should show at once (a 1 MB answer
became 501 Discord messages). :class:`AnswerCap` splits the answer the way
``bot.delivery.ReplyStream`` does (``bot.split.take_part`` at the sink's message
length, one character of context kept before the part in progress), one delta at a
time, and hands on only text that fits in ``max_messages`` messages. A part's end
is known only once text past it arrived, so the last allowed message is held back
until it is complete (or the answer ends: ``rest``); then the core stops the model
and ends the answer with a note.
"""

from __future__ import annotations

from .split import Fence, take_part


class AnswerCap:
    """The text of an answer that fits in ``max_messages`` messages, delta by delta."""

    def __init__(self, max_len: int, max_messages: int) -> None:
        self._max_len = max_len
        self._max_messages = max_messages
        self._buf = ""  # from one character before the part in progress
        self._start = 0  # where the part in progress begins in _buf
        self._fence: Fence | None = None  # code fence open at _start
        self._released = 0  # _buf up to here was handed on
        self._complete = 0  # messages filled so far
        self.full = False  # the last allowed message is complete: nothing more fits

    def take(self, delta: str) -> str:
        """The text that may be shown now (possibly "" while the last message waits)."""
        if self.full:
            return ""
        self._buf += delta
        out = ""
        while True:
            taken = take_part(self._buf, self._max_len, self._fence, start=self._start)
            if taken is None:
                break
            _, end, fence = taken
            self._complete += 1
            out += self._release(end)
            if self._complete >= self._max_messages:
                self.full = True
                return out
            keep = max(0, end - 1)
            self._buf = self._buf[keep:]
            self._released -= keep
            self._start, self._fence = end - keep, fence
        if self._complete < self._max_messages - 1:
            out += self._release(len(self._buf))
        return out

    def rest(self) -> str:
        """At the end of the answer: what was held back (it fits)."""
        return "" if self.full else self._release(len(self._buf))

    def _release(self, upto: int) -> str:
        start = self._released
        self._released = max(upto, start)
        return self._buf[start:upto]
