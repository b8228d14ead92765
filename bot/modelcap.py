"""A process-wide cap on concurrent model requests (``openai.max_concurrent_requests``).

Each answer holds one slot from before its first attempt until its stream is
closed, retries included. Waiters get slots in arrival order (asyncio's semaphore
hands a released slot to the longest waiter, never to a newcomer), and a
conversation asks for one answer at a time (its lane), so no conversation can hold
more than one slot and every waiting conversation is served in turn.
The answer's own deadline starts once it holds a slot: waiting is bounded by the
deadlines of the answers ahead of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from .types import Answer, ChatMessage, ChatModel


class CappedModel:
    """:class:`bot.types.ChatModel` that lets at most ``max_concurrent`` streams run."""

    def __init__(self, model: ChatModel, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._model = model
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_concurrent = max_concurrent
        self._waiting = 0
        self._in_flight = 0

    def sharing(self, model: ChatModel) -> CappedModel:
        """``model`` behind these same slots (the quotas' fallback_model): the cap
        holds for both together."""
        twin = CappedModel(model, self._max_concurrent)
        twin._slots = self._slots
        return twin

    @property
    def in_flight(self) -> int:
        """Streams holding a slot now."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Answers waiting for a slot now."""
        return self._waiting

    async def stream(
        self, messages: list[ChatMessage], answer: Answer
    ) -> AsyncGenerator[str, None]:
        """The wrapped model's stream, once a slot is free; the slot is freed on close."""
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._in_flight += 1
        try:
            deltas = self._model.stream(messages, answer)
            try:
                async for delta in deltas:
                    yield delta
            finally:
                await deltas.aclose()
        finally:
            self._in_flight -= 1
            self._slots.release()
