"""Deliver one answer into a ReplySink while the model is still writing it.

Three ways, picked from the sink's limits:

* native: the platform streams (stream_start / stream_append / stream_stop);
* edit: post the first text at once, then edit the message as text arrives;
* parts: post each part when it is complete (no edits).

``push`` only records text and wakes one writer task; that task makes every
write, one at a time and in order, so a message is never edited concurrently.
Each write takes a token from the pacer for the sink's pace key, and edits of
one message are at least ``min_edit_interval`` apart (deltas in between are
coalesced). The writer never reads anything from the platform.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from types import MappingProxyType
from typing import TypeVar, cast

from .delivery_plan import (
    NOTE_GAP_LINES,
    PLANNERS,
    Frozen,
    Mode,
    Op,
    Progress,
    Step,
    closing_line,
    fallback_mode,
    initial_mode,
)
from .pacing import Pace, Pacer
from .split import Fence, Part, fence_at_end, last_part, part_prefix, split_text
from .types import NativeStreamSink, NativeStreamUnavailable, ReplySink

log = logging.getLogger(__name__)

RETRY_DELAY_S = 0.5  # pause before the single retry of a failed sink call
NATIVE_METHODS = ("stream_start", "stream_append", "stream_stop")  # NativeStreamSink's
# A sink call's name -> the kind of write it is, for ``pace_for``.
SINK_OPS = MappingProxyType(
    {
        "send": "send",
        "edit": "edit",
        "stream_start": "start",
        "stream_append": "append",
        "stream_stop": "stop",
    }
)

T = TypeVar("T")


class DeliveryError(Exception):
    """A sink call failed twice; the answer could not be delivered in full."""


class ReplyStream:
    """Streams one answer into ``sink``; see the module docstring."""

    def __init__(
        self,
        sink: ReplySink,
        pacer: Pacer,
        *,
        retry_delay: float = RETRY_DELAY_S,
        before_first_write: Callable[[], Awaitable[None]] | None = None,
    ):
        self._sink = sink
        self._before_first_write = before_first_write
        self._pacer = pacer
        self._limits = sink.limits
        self._retry_delay = retry_delay
        self._native = _native(sink)
        self._mode = initial_mode(sink.limits, self._native is not None)
        # The answer is kept as frozen text plus a working buffer that starts one
        # character before the part in progress (so pushes copy little).
        self._done = ""  # bodies of the frozen parts
        self._buf = ""
        self._start = 0  # where the part in progress begins in _buf
        self._fence: Fence | None = None  # fence open at _start
        self._parts: list[Part] = []
        self._msg_id: str | None = None  # message/stream showing the current part
        self._shown = ""  # its text (send/edit)
        self._shown_end = 0  # native: _buf index the open stream shows up to
        self._last_write = float("-inf")  # clock time of the last write to _msg_id
        self._note: str | None = None
        self._note_shown = False
        self._closing = False
        self._optional: asyncio.Task[None] | None = None  # finish() cuts this wait short
        self._wake = asyncio.Event()
        self._credited = False  # the answer's first write went out on credit
        # A sink with ``pace_for(op)`` paces each kind of write on its own bucket
        # (bot/pacing.py); the token for a message's final write is taken before
        # the message opens (see _wait_paced).
        self._pace_for: Callable[[str], Pace] | None = _pace_for(sink)
        self._reserved: Pace | None = None
        self._writer: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        """Everything pushed so far."""
        return self._done + self._buf[self._start :]

    @property
    def parts(self) -> list[Part]:
        """The parts delivered so far; after ``finish`` their bodies make up ``text``."""
        return list(self._parts)

    async def push(self, delta: str) -> None:
        """Add model text; raises DeliveryError if an earlier write failed for good."""
        if self._closing:
            raise RuntimeError("push() after finish() or fail()")
        self._raise_if_failed()
        if not delta:
            return
        self._buf += delta
        self._ensure_writer()
        self._wake.set()

    async def finish(self) -> None:
        """Make the whole answer visible (waits for pacing); raises DeliveryError."""
        self._closing = True
        if self._optional is not None:
            self._optional.cancel()
        if self._writer is not None and self._writer.cancelled():
            return  # aclose() stopped this stream
        if self._writer is None:
            if not self._buf[self._start :]:
                return
            self._ensure_writer()
        self._wake.set()
        assert self._writer is not None
        await self._writer

    async def fail(self, note: str) -> None:
        """The answer broke: show ``note`` after the partial text, or on its own."""
        self._note = note or None
        try:
            await self.finish()
        except DeliveryError as exc:
            log.warning("partial answer not fully shown before the note: %s", exc)
        if self._note is not None and not self._note_shown:
            await self._send_note(self._note)

    async def finish_with_note(self, note: str) -> None:
        """``finish``, then ``note`` after the text: in its last message if it fits,
        else as a message of its own. Raises DeliveryError as ``finish`` does."""
        self._note = note or None
        await self.finish()
        if self._note is not None and not self._note_shown:
            await self._send_note(self._note)

    async def aclose(self) -> None:
        """Stop writing without flushing (for cancellation and shutdown)."""
        self._closing = True
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def cut(self, note: str, timeout_s: float) -> None:
        """Shutdown cut the answer: stop writing, then end what is shown with ``note``
        (an open native stream is stopped, never left streaming). Gives up after
        ``timeout_s``; never raises but CancelledError."""
        await self.aclose()
        try:
            await asyncio.wait_for(self._write_cut_note(note), timeout_s)
        except (TimeoutError, DeliveryError) as exc:
            log.warning("could not end the cut answer on %s: %r", self._sink.pace_key, exc)

    async def _write_cut_note(self, note: str) -> None:
        gap = "\n" * NOTE_GAP_LINES
        msg_id, max_len = self._msg_id, self._limits.max_len
        if msg_id is not None and self._mode is Mode.NATIVE:
            stream = self._stream()
            shown = self._buf[self._start : self._shown_end]
            fence = fence_at_end(self._buf[: self._shown_end], self._start, self._fence)
            tail = (closing_line(shown, fence) if fence else "") + gap + note
            fits = len(part_prefix(self._fence, max_len) + shown + tail) <= max_len
            if fits:
                await self._call("stream_append", partial(stream.stream_append, msg_id, tail))
            await self._call("stream_stop", partial(stream.stream_stop, msg_id))
            if fits:
                return
        elif msg_id is not None and self._mode is Mode.EDIT and self._shown.strip():
            text = self._shown.rstrip("\n") + gap + note
            if len(text) <= max_len:
                await self._call("edit", partial(self._sink.edit, msg_id, text))
                return
        for part in split_text(note, max_len):
            await self._call("send", partial(self._sink.send, part.render()))

    # -- the writer task -------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._run(), name="reply-stream")

    def _raise_if_failed(self) -> None:
        writer = self._writer
        if writer is None or not writer.done() or writer.cancelled():
            return
        exc = writer.exception()
        if exc is not None:
            raise exc

    async def _run(self) -> None:
        if self._before_first_write is not None:
            await self._before_first_write()
        while True:
            step = self._plan()
            if step is None:
                if self._closing:
                    break
                self._wake.clear()
                await self._wake.wait()
                continue
            if step.op is not Op.SKIP:
                if not await self._wait_turn(step):
                    continue  # the answer completed meanwhile: plan its final write
                # More text may have arrived while waiting: write the latest.
                latest = self._plan()
                if latest is None:
                    continue
                if self._other_bucket(step, latest):
                    continue  # e.g. a stream's start became one whole post: wait for that
                step = latest
            await self._execute(step)
        self._release()
        if self._start < len(self._buf):
            self._parts.append(last_part(self._buf, self._limits.max_len, self._fence, self._start))

    async def _wait_turn(self, step: Step) -> bool:
        """Wait until ``step`` may be written; False if an optional wait was cut short."""
        # The first text of a message and the final text are what the reader waits
        # for: they never wait for the coalescing interval, and where the platform
        # client paces writes itself (discord.py obeys Discord's rate-limit headers)
        # they skip our pacer too. Where our pacer is the only one (pace_essential),
        # the answer's very first write goes at once on credit (a question asked in
        # a busy channel is not kept waiting by earlier answers) and later writes
        # wait longer to pay it back. Edits in between are optional and always paced.
        if self._pace_for is not None and (
            step.op.opens or self._closing or step.frozen is not None
        ):
            return await self._wait_paced(step)
        if step.op.opens or self._closing:
            if not self._limits.pace_essential:
                return True
            if self._credited:
                await self._acquire(step.op.token)
            else:
                self._credited = True
                self._charge()
            return True
        # An optional edit: when the answer completes meanwhile, finish() cancels the
        # wait; the writer then plans the final text, which goes out as an essential
        # write. (One task that finish() cancels: a second task waiting for an event
        # plus asyncio.wait cost three more task steps per answer.)
        return await self._cancellable(self._optional_wait(step))

    async def _wait_paced(self, step: Step) -> bool:
        """An essential write on a sink pacing each kind of write (``pace_for``).

        Essential writes wait for their token (they are never dropped). Before a
        message opens with part of the answer, the token for its final write is
        taken, as an optional wait: under pressure, when the answer completes
        first, it goes out whole in one message and the reader saw nothing less.
        """
        final = self._final_op()
        opening = step.op.opens and step.frozen is None and not self._closing
        if opening and final is not None and self._reserved is None:
            pace = self._pace(final)
            if not await self._cancellable(self._pacer.acquire_optional(*pace.args)):
                return False
            self._reserved = pace
        await self._acquire(step.op.token)
        return True

    async def _cancellable(self, wait: Awaitable[None]) -> bool:
        """Run an optional wait that finish() cuts short; False if it did."""
        waiting = asyncio.ensure_future(wait)
        self._optional = waiting
        try:
            await waiting
        except asyncio.CancelledError:
            if _cancelling():  # the writer itself is being cancelled (aclose, shutdown)
                raise
            return False
        finally:
            self._optional = None
        return True

    async def _optional_wait(self, step: Step) -> None:
        if step.op.spaced and self._msg_id is not None:
            delay = self._last_write + self._limits.min_edit_interval - self._pacer.clock()
            if delay > 0:
                await self._pacer.sleep(delay)
        if self._pace_for is not None:
            await self._pacer.acquire_optional(*self._pace(step.op.token).args)
        else:
            await self._acquire(step.op.token)

    def _charge(self) -> None:
        self._pacer.charge(*self._pace("send").args)

    async def _acquire(self, op: str) -> None:
        """Wait for a token for ``op``; a message's final write uses the one reserved."""
        pace = self._pace(op)
        if self._reserved is not None and self._reserved.key == pace.key:
            self._reserved = None
            await self._pacer.wait_unblocked(pace.key)  # a 429 since it was taken
            return
        await self._pacer.acquire(*pace.args)

    def _pace(self, op: str) -> Pace:
        if self._pace_for is not None:
            return self._pace_for(op)
        limits = self._limits
        return Pace(self._sink.pace_key, limits.edit_burst, limits.edit_rate)

    def _other_bucket(self, waited: Step, latest: Step) -> bool:
        """Whether ``latest`` needs a token other than the one taken for ``waited``.

        If so, that token is handed back and the writer waits again.
        """
        if self._pace_for is None or latest.op == waited.op:
            return False
        taken, needed = self._pace(waited.op.token), self._pace(latest.op.token)
        if taken.key == needed.key:
            return False
        self._pacer.refund(*taken.args)
        return True

    def _final_op(self) -> str | None:
        """The write that completes an open message in this mode (None: no such write)."""
        if self._mode is Mode.NATIVE:
            return "stop"
        return "edit" if self._mode is Mode.EDIT else None

    def _release(self) -> None:
        """Hand back a reserved token the message did not need (it went out whole)."""
        if self._reserved is not None:
            self._pacer.refund(*self._reserved.args)
            self._reserved = None

    # -- planning: what to write next (bot/delivery_plan.py) -------------

    def _plan(self) -> Step | None:
        return PLANNERS[self._mode](self._progress())

    def _progress(self) -> Progress:
        return Progress(
            buf=self._buf,
            start=self._start,
            fence=self._fence,
            max_len=self._limits.max_len,
            open=self._msg_id is not None,
            shown=self._shown,
            shown_end=self._shown_end,
            closing=self._closing,
            note=self._note,
            note_shown=self._note_shown,
        )

    # -- executing one step ----------------------------------------------

    async def _execute(self, step: Step) -> None:
        if step.op is Op.START:
            if not await self._start_stream(step.text):
                return
            self._shown_end = step.shown_end
        elif step.op in (Op.APPEND, Op.CLOSE, Op.STOP):
            await self._write_stream(step)
        elif step.op is Op.SEND:
            self._msg_id = await self._call("send", partial(self._sink.send, step.text))
            self._shown = step.text
            if step.frozen is not None:
                self._release()
        elif step.op is Op.EDIT:
            await self._call("edit", partial(self._sink.edit, self._id(), step.text))
            self._shown = step.text
        self._last_write = self._pacer.clock()
        self._note_shown = self._note_shown or step.with_note
        if step.frozen is not None:
            self._complete(step.frozen)

    async def _write_stream(self, step: Step) -> None:
        """Append to the open native stream; CLOSE and STOP end it with their text."""
        stream, stream_id = self._stream(), self._id()
        if step.op is Op.APPEND:
            await self._call("stream_append", partial(stream.stream_append, stream_id, step.text))
        else:
            await self._call("stream_stop", partial(stream.stream_stop, stream_id, step.text))
        self._shown_end = step.shown_end

    async def _start_stream(self, text: str) -> bool:
        """Open a native stream; on refusal switch this answer to send/edit."""
        try:
            self._msg_id = await self._call(
                "stream_start",
                partial(self._stream().stream_start, text),
                passthrough=(NativeStreamUnavailable,),
            )
        except NativeStreamUnavailable as exc:
            self._release()  # it was for the stream's stop
            self._mode = fallback_mode(self._limits)
            log.info(
                "native streaming refused on %s (%s); using %s",
                self._sink.pace_key,
                exc,
                self._mode.value,
            )
            return False
        return True

    def _complete(self, frozen: Frozen) -> None:
        part, end, fence = frozen
        self._parts.append(part)
        self._done += part.body
        keep = max(0, end - 1)  # one character of context tells whether a line continues
        self._buf = self._buf[keep:]
        self._start = self._shown_end = end - keep
        self._fence = fence
        self._msg_id, self._shown = None, ""
        self._last_write = float("-inf")

    def _stream(self) -> NativeStreamSink:
        assert self._native is not None, "native mode needs a NativeStreamSink"
        return self._native

    def _id(self) -> str:
        assert self._msg_id is not None, "no message to write to"
        return self._msg_id

    async def _call(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        *,
        passthrough: tuple[type[Exception], ...] = (),
    ) -> T:
        """Run one sink call; retry once after a pause; then raise DeliveryError."""
        try:
            return await call()
        except passthrough:
            raise
        except Exception as exc:
            log.warning("%s on %s failed, retrying once: %r", what, self._sink.pace_key, exc)
        await self._pacer.sleep(self._retry_delay)
        # The failed call may have used up a platform slot.
        await self._pacer.acquire(*self._pace(SINK_OPS.get(what, what)).args)
        try:
            return await call()
        except passthrough:
            raise
        except Exception as exc:
            raise DeliveryError(f"{what} failed twice: {exc!r}") from exc

    async def _send_note(self, note: str) -> None:
        for part in split_text(note, self._limits.max_len):
            text = part.render()
            if text.strip():
                await self._acquire("send")
                await self._call("send", partial(self._sink.send, text))
        self._note_shown = True


def _cancelling() -> bool:
    """Whether the running task was asked to cancel (not merely a task it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _pace_for(sink: ReplySink) -> Callable[[str], Pace] | None:
    """The sink's ``pace_for(op)``, if it paces each kind of write on its own."""
    pace_for = getattr(sink, "pace_for", None)
    return cast(Callable[[str], Pace], pace_for) if callable(pace_for) else None


def _native(sink: ReplySink) -> NativeStreamSink | None:
    """``sink`` if it streams natively. Not ``isinstance``: against a runtime
    Protocol that walks all its members and their annotations (1% of the bot's CPU
    under load, one check per answer)."""
    if all(callable(getattr(sink, name, None)) for name in NATIVE_METHODS):
        return cast(NativeStreamSink, sink)
    return None
