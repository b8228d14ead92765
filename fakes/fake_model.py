"""An in-process ChatModel for core tests that need an answer, not the OpenAI HTTP path.

Each call to :meth:`FakeModel.stream` takes the next scripted :class:`Step` (or the
default when the script is empty), records the messages it was asked with, and
streams the step's deltas: optionally waiting on a gate first, sleeping between
deltas, and ending in a ``bot.errors.LLMError`` of a chosen kind.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

from bot.errors import LLMError, LLMErrorKind
from bot.types import Answer, ChatMessage, ChatModel, Usage

DEFAULT_TEXT = "Hello from the fake model."
Respond = Callable[[list[ChatMessage]], Sequence[str]]  # messages -> deltas


@dataclass(frozen=True, slots=True)
class Step:
    """What one model call does: deltas (fixed or from the messages), then maybe an error."""

    deltas: tuple[str, ...] = ()
    respond: Respond | None = None  # overrides ``deltas`` when set
    error: LLMErrorKind | None = None  # raised after the deltas
    gate: asyncio.Event | None = None  # the call waits for it before the first delta
    delay_s: float = 0.0  # sleep before each delta
    usage: Usage | None = None  # filled into the Answer when the call succeeds


def says(*deltas: str, gate: asyncio.Event | None = None, delay_s: float = 0.0) -> Step:
    """A call that streams ``deltas`` and succeeds."""
    return Step(deltas=deltas, gate=gate, delay_s=delay_s)


def fails(kind: LLMErrorKind, *deltas: str) -> Step:
    """A call that streams ``deltas`` (maybe none), then fails with ``kind``."""
    return Step(deltas=deltas, error=kind)


def echo_last_user(messages: list[ChatMessage]) -> Sequence[str]:
    """Answer with the newest user message's content, as one delta."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    return [users[-1] if users else ""]


def echoes(*, gate: asyncio.Event | None = None, delay_s: float = 0.0) -> Step:
    """A call that repeats the newest user message."""
    return Step(respond=echo_last_user, gate=gate, delay_s=delay_s)


class FakeModel:
    """A scripted ChatModel; ``calls`` holds the messages of every call, in order."""

    def __init__(self, *script: Step, default: Step | None = None) -> None:
        self.default = default if default is not None else says(DEFAULT_TEXT)
        self._script: deque[Step] = deque(script)
        self.calls: list[list[ChatMessage]] = []
        self.active = 0  # calls streaming right now
        self.finished = 0  # calls that ended, by success or error

    def script(self, *steps: Step) -> None:
        """Queue ``steps`` for the next calls, after any still queued."""
        self._script.extend(steps)

    @property
    def call_count(self) -> int:
        return len(self.calls)

    async def stream(
        self, messages: list[ChatMessage], answer: Answer
    ) -> AsyncGenerator[str, None]:
        """Yield the next step's deltas (see the module docstring)."""
        step = self._script.popleft() if self._script else self.default
        self.calls.append([dict(m) for m in messages])  # a copy: the caller may reuse the list
        self.active += 1
        try:
            if step.gate is not None:
                await step.gate.wait()
            deltas = step.respond(messages) if step.respond is not None else step.deltas
            for delta in deltas:
                if step.delay_s:
                    await asyncio.sleep(step.delay_s)
                yield delta
            if step.error is not None:
                raise LLMError(step.error, "scripted by FakeModel")
            if step.usage is not None:
                answer.usage = step.usage
        finally:
            self.active -= 1
            self.finished += 1


# mypy checks here that FakeModel satisfies the ChatModel Protocol.
_AS_CHAT_MODEL: Callable[[], ChatModel] = FakeModel
