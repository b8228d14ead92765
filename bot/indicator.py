"""The typing indicator, shown only while an answer is slow to start.

A model that streams its first text within ``delay_s`` needs no indicator: the
text itself appears at once, and the call would only spend the channel's rate
budget (and, awaited, a round trip before the model is even asked). A slower one
gets the indicator after ``delay_s``; the answer's first write waits for that call
to finish, so a platform that clears the indicator when the bot posts sees the
post after it.
"""

from __future__ import annotations

import asyncio
import logging

from .types import ReplySink

log = logging.getLogger(__name__)

TYPING_DELAY_S = 0.25  # below what a reader notices; above a fast model's first token


class TypingIndicator:
    """Arms the indicator for one answer; ``settle`` before the first write."""

    def __init__(
        self, sink: ReplySink, tasks: set[asyncio.Task[None]], delay_s: float = TYPING_DELAY_S
    ) -> None:
        self._sink = sink
        self._tasks = tasks  # owned by the caller: keeps running calls referenced
        self._task: asyncio.Task[None] | None = None
        self._done = False
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._start)

    async def settle(self) -> None:
        """No indicator from now on; wait for one already on its way."""
        self.cancel()
        if self._task is not None:
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        """No indicator from now on (a call already sent finishes on its own)."""
        self._done = True
        self._timer.cancel()

    def _start(self) -> None:
        self._task = asyncio.create_task(self._show(), name="typing")
        self._tasks.add(self._task)
        self._task.add_done_callback(self._tasks.discard)

    async def _show(self) -> None:
        try:
            await self._sink.typing()
        except Exception as exc:  # a missing indicator must not cost the answer
            log.info("typing indicator failed: %s", exc)
            return
        # Shown again until the answer begins: a thinking model may take minutes, and
        # the answer's deadline (its cancel) bounds the repeats.
        refresh = self._sink.limits.typing_refresh_s
        if refresh > 0 and not self._done:
            self._timer = asyncio.get_running_loop().call_later(refresh, self._start)
