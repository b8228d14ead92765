"""When one answer's next write may go: pacing and coalescing for ``ReplyStream``.

Each write takes a token from the pacer for the sink's pace key; a sink with
``pace_for(op)`` paces each kind of write on its own bucket (bot/pacing.py).
Writes the reader waits for (a message's first text, the final text, a part
that reaches the limit) are essential and never dropped; edits in between are
optional: they wait ``min_edit_interval`` after the last write to the message
(text arriving meanwhile is coalesced) and give way when the answer completes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

from .delivery_plan import Step
from .pacing import Pace, Pacer
from .types import PlatformLimits, ReplySink

NEVER = float("-inf")  # the last write to a message that has not been written yet
CREDIT_OP = "send"  # the kind of write the answer's first write is charged as


class Turns:
    """The pacing state of one answer's writes."""

    def __init__(self, pacer: Pacer, sink: ReplySink) -> None:
        self._pacer = pacer
        self._limits: PlatformLimits = sink.limits
        self._pace_key = sink.pace_key
        self._pace_for: Callable[[str], Pace] | None = _pace_for(sink)
        self._credited = False  # the answer's first write went out on credit
        # The token for a message's final write, taken before the message opens.
        self._reserved: Pace | None = None
        self._optional: asyncio.Future[None] | None = None  # cut_short() cancels it
        self._last_write = NEVER  # clock time of the last write to the open message

    async def wait(self, step: Step, *, closing: bool, open_: bool, final: str | None) -> bool:
        """Wait until ``step`` may be written; False if an optional wait was cut short.

        ``closing``: the answer is complete; ``open_``: a message shows the part in
        progress; ``final``: the kind of write that completes a message in this mode.
        """
        # The first text of a message and the final text are what the reader waits
        # for: they never wait for the coalescing interval, and where the platform
        # client paces writes itself (discord.py obeys Discord's rate-limit headers)
        # they skip our pacer too. Where our pacer is the only one (pace_essential),
        # the answer's very first write goes at once on credit (a question asked in
        # a busy channel is not kept waiting by earlier answers) and later writes
        # wait longer to pay it back. Edits in between are optional and always paced.
        essential = step.op.opens or closing
        if self._pace_for is not None and (essential or step.frozen is not None):
            return await self._wait_paced(step, closing, final)
        if essential:
            if not self._limits.pace_essential:
                return True
            if self._credited:
                await self.acquire(step.op.token)
            else:
                self._credited = True
                self._pacer.charge(*self.pace(CREDIT_OP).args)
            return True
        # An optional edit: when the answer completes meanwhile, finish() cancels the
        # wait; the writer then plans the final text, which goes out as an essential
        # write. (One task that finish() cancels: a second task waiting for an event
        # plus asyncio.wait cost three more task steps per answer.)
        return await self._cancellable(self._optional_wait(step, open_))

    def cut_short(self) -> None:
        """The answer completed: stop an optional wait (its write is superseded)."""
        if self._optional is not None:
            self._optional.cancel()

    def wrote(self) -> None:
        """A write to the open message went out now."""
        self._last_write = self._pacer.clock()

    def new_message(self) -> None:
        """The next write opens a new message: nothing to space it from."""
        self._last_write = NEVER

    async def acquire(self, op: str) -> None:
        """Wait for a token for ``op``; a message's final write uses the one reserved."""
        pace = self.pace(op)
        if self._reserved is not None and self._reserved.key == pace.key:
            self._reserved = None
            await self._pacer.wait_unblocked(pace.key)  # a 429 since it was taken
            return
        await self._pacer.acquire(*pace.args)

    def pace(self, op: str) -> Pace:
        """The bucket a write of kind ``op`` takes its token from."""
        if self._pace_for is not None:
            return self._pace_for(op)
        return Pace(self._pace_key, self._limits.edit_burst, self._limits.edit_rate)

    def other_bucket(self, waited: Step, latest: Step) -> bool:
        """Whether ``latest`` needs a token other than the one taken for ``waited``.

        If so, that token is handed back and the writer waits again.
        """
        if self._pace_for is None or latest.op == waited.op:
            return False
        taken, needed = self.pace(waited.op.token), self.pace(latest.op.token)
        if taken.key == needed.key:
            return False
        self._pacer.refund(*taken.args)
        return True

    def release(self) -> None:
        """Hand back a reserved token the message did not need (it went out whole)."""
        if self._reserved is not None:
            self._pacer.refund(*self._reserved.args)
            self._reserved = None

    async def _wait_paced(self, step: Step, closing: bool, final: str | None) -> bool:
        """An essential write on a sink pacing each kind of write (``pace_for``).

        Essential writes wait for their token (they are never dropped). Before a
        message opens with part of the answer, the token for its final write is
        taken, as an optional wait: under pressure, when the answer completes
        first, it goes out whole in one message and the reader saw nothing less.
        """
        opening = step.op.opens and step.frozen is None and not closing
        if opening and final is not None and self._reserved is None:
            pace = self.pace(final)
            if not await self._cancellable(self._pacer.acquire_optional(*pace.args)):
                return False
            self._reserved = pace
        await self.acquire(step.op.token)
        return True

    async def _cancellable(self, wait: Awaitable[None]) -> bool:
        """Run an optional wait that cut_short() ends; False if it did."""
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

    async def _optional_wait(self, step: Step, open_: bool) -> None:
        if step.op.spaced and open_:
            delay = self._last_write + self._limits.min_edit_interval - self._pacer.clock()
            if delay > 0:
                await self._pacer.sleep(delay)
        if self._pace_for is not None:
            await self._pacer.acquire_optional(*self.pace(step.op.token).args)
        else:
            await self.acquire(step.op.token)


def _cancelling() -> bool:
    """Whether the running task was asked to cancel (not merely a task it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _pace_for(sink: ReplySink) -> Callable[[str], Pace] | None:
    """The sink's ``pace_for(op)``, if it paces each kind of write on its own."""
    pace_for = getattr(sink, "pace_for", None)
    return cast(Callable[[str], Pace], pace_for) if callable(pace_for) else None
