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

The writer is a loop of three pieces: the planner of the answer's mode decides
the next step (bot/delivery_plan.py, pure), Turns waits until it may go
(bot/delivery_turns.py), and the executor here makes the sink call.
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
    Answer,
    Mode,
    Op,
    Step,
    closing_line,
    fallback_mode,
    initial_mode,
)
from .delivery_turns import Turns
from .errors import PlatformRefused
from .pacing import Pacer
from .split import Part, fence_at_end, part_prefix, split_text
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
    """A sink call failed twice, or was refused (``refused``: no retry or error
    notice can get through either); the answer could not be delivered in full."""

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


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
        self._planner = PLANNERS[self._mode]
        self._answer = Answer(sink.limits.max_len)
        self._turns = Turns(pacer, sink)
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        """Everything pushed so far."""
        return self._answer.text

    @property
    def parts(self) -> list[Part]:
        """The parts delivered so far; after ``finish`` their bodies make up ``text``."""
        return list(self._answer.parts)

    async def push(self, delta: str) -> None:
        """Add model text; raises DeliveryError if an earlier write failed for good."""
        if self._answer.closing:
            raise RuntimeError("push() after finish() or fail()")
        self._raise_if_failed()
        if not delta:
            return
        self._answer.buf += delta
        self._ensure_writer()
        self._wake.set()

    async def finish(self) -> None:
        """Make the whole answer visible (waits for pacing); raises DeliveryError."""
        self._answer.closing = True
        self._turns.cut_short()
        if self._writer is not None and self._writer.cancelled():
            return  # aclose() stopped this stream
        if self._writer is None:
            if not self._answer.pending:
                return
            self._ensure_writer()
        self._wake.set()
        assert self._writer is not None
        await self._writer

    async def fail(self, note: str) -> None:
        """The answer broke: show ``note`` after the partial text, or on its own."""
        self._answer.note = note or None
        try:
            await self.finish()
        except DeliveryError as exc:
            log.warning("partial answer not fully shown before the note: %s", exc)
        await self._send_note_if_unshown()

    async def finish_with_note(self, note: str) -> None:
        """``finish``, then ``note`` after the text: in its last message if it fits,
        else as a message of its own. Raises DeliveryError as ``finish`` does."""
        self._answer.note = note or None
        await self.finish()
        await self._send_note_if_unshown()

    async def aclose(self) -> None:
        """Stop writing without flushing (for cancellation and shutdown)."""
        self._answer.closing = True
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
        """Plan, wait for the turn, write; until the answer is complete and shown."""
        if self._before_first_write is not None:
            await self._before_first_write()
        while True:
            step = self._plan()
            if step is None:
                if self._answer.closing:
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
                if self._turns.other_bucket(step, latest):
                    continue  # e.g. a stream's start became one whole post: wait for that
                step = latest
            await self._execute(step)
        self._turns.release()
        self._answer.end()

    def _plan(self) -> Step | None:
        return self._planner(self._answer)

    async def _wait_turn(self, step: Step) -> bool:
        answer = self._answer
        return await self._turns.wait(
            step,
            closing=answer.closing,
            open_=answer.msg_id is not None,
            final=self._mode.final_token,
        )

    # -- the executor: one step through the sink ---------------------------

    async def _execute(self, step: Step) -> None:
        msg_id = self._answer.msg_id
        if step.op is Op.START:
            msg_id = await self._start_stream(step.text)
            if msg_id is None:
                return  # refused: the answer's mode changed, plan again
        elif step.op in (Op.APPEND, Op.CLOSE, Op.STOP):
            await self._write_stream(step)
        elif step.op is Op.SEND:
            msg_id = await self._call("send", partial(self._sink.send, step.text))
            if step.frozen is not None:
                self._turns.release()
        elif step.op is Op.EDIT:
            await self._call("edit", partial(self._sink.edit, self._id(), step.text))
        self._turns.wrote()
        self._answer.shown_by(step, msg_id)
        if step.frozen is not None:
            self._turns.new_message()

    async def _write_stream(self, step: Step) -> None:
        """Append to the open native stream; CLOSE and STOP end it with their text."""
        stream, stream_id = self._stream(), self._id()
        if step.op is Op.APPEND:
            await self._call("stream_append", partial(stream.stream_append, stream_id, step.text))
        else:
            await self._call("stream_stop", partial(stream.stream_stop, stream_id, step.text))

    async def _start_stream(self, text: str) -> str | None:
        """Open a native stream; on refusal switch this answer to send/edit (None)."""
        try:
            return await self._call(
                "stream_start",
                partial(self._stream().stream_start, text),
                passthrough=(NativeStreamUnavailable,),
            )
        except NativeStreamUnavailable as exc:
            self._turns.release()  # it was for the stream's stop
            self._mode = fallback_mode(self._limits)
            self._planner = PLANNERS[self._mode]
            log.info(
                "native streaming refused on %s (%s); using %s",
                self._sink.pace_key,
                exc,
                self._mode.label,
            )
            return None

    def _stream(self) -> NativeStreamSink:
        assert self._native is not None, "native mode needs a NativeStreamSink"
        return self._native

    def _id(self) -> str:
        assert self._answer.msg_id is not None, "no message to write to"
        return self._answer.msg_id

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
        except PlatformRefused as exc:
            raise DeliveryError(str(exc), refused=True) from exc
        except Exception as exc:
            log.warning("%s on %s failed, retrying once: %r", what, self._sink.pace_key, exc)
        await self._pacer.sleep(self._retry_delay)
        # The failed call may have used up a platform slot.
        await self._pacer.acquire(*self._turns.pace(SINK_OPS.get(what, what)).args)
        try:
            return await call()
        except passthrough:
            raise
        except PlatformRefused as exc:
            raise DeliveryError(str(exc), refused=True) from exc
        except Exception as exc:
            raise DeliveryError(f"{what} failed twice: {exc!r}") from exc

    # -- notes after the answer ------------------------------------------

    async def _send_note_if_unshown(self) -> None:
        """Post the note as messages of its own unless the last write carried it."""
        note = self._answer.note
        if note is None or self._answer.note_shown:
            return
        for part in split_text(note, self._limits.max_len):
            text = part.render()
            if text.strip():
                await self._turns.acquire("send")
                await self._call("send", partial(self._sink.send, text))
        self._answer.note_shown = True

    async def _write_cut_note(self, note: str) -> None:
        """End what a cut answer shows with ``note``, or post it on its own."""
        answer, max_len, gap = self._answer, self._limits.max_len, "\n" * NOTE_GAP_LINES
        msg_id = answer.msg_id
        if msg_id is not None and self._mode is Mode.NATIVE:
            stream = self._stream()
            shown = answer.buf[answer.start : answer.shown_end]
            fence = fence_at_end(answer.buf[: answer.shown_end], answer.start, answer.fence)
            tail = (closing_line(shown, fence) if fence else "") + gap + note
            fits = len(part_prefix(answer.fence, max_len) + shown + tail) <= max_len
            if fits:
                await self._call("stream_append", partial(stream.stream_append, msg_id, tail))
            await self._call("stream_stop", partial(stream.stream_stop, msg_id))
            if fits:
                return
        elif msg_id is not None and self._mode is Mode.EDIT and answer.shown.strip():
            text = answer.shown.rstrip("\n") + gap + note
            if len(text) <= max_len:
                await self._call("edit", partial(self._sink.edit, msg_id, text))
                return
        for part in split_text(note, max_len):
            await self._call("send", partial(self._sink.send, part.render()))


def _native(sink: ReplySink) -> NativeStreamSink | None:
    """``sink`` if it streams natively. Not ``isinstance``: against a runtime
    Protocol that walks all its members and their annotations (1% of the bot's CPU
    under load, one check per answer)."""
    if all(callable(getattr(sink, name, None)) for name in NATIVE_METHODS):
        return cast(NativeStreamSink, sink)
    return None
