"""Questions waiting for the asker's yes or no (``confirm: true`` tools).

One question at a time per conversation. Only the person who asked the bot can
answer it, and only with a message of their own (``!yes`` / ``!no``) or a button
press an adapter reports: nothing a model or a tool writes reaches here, so the
result of one tool can never approve another.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

MAX_PENDING = 1000  # questions open at once across the process; more are refused


@dataclass(slots=True)
class _Question:
    asker: str
    answer: asyncio.Future[bool]


class Approvals:
    """Open questions, by conversation."""

    def __init__(self) -> None:
        self._open: dict[str, _Question] = {}

    async def ask(self, conversation: str, asker: str, wait_s: float) -> bool | None:
        """Wait for the asker's answer: True yes, False no, None no answer in time."""
        if conversation in self._open or len(self._open) >= MAX_PENDING:
            return False  # one at a time; a flood of questions is refused
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._open[conversation] = _Question(asker, future)
        try:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(future, wait_s)
            return None
        finally:
            self._open.pop(conversation, None)

    def answer(self, conversation: str, person: str, yes: bool) -> bool:
        """Record ``person``'s answer; True if it answered an open question of theirs."""
        question = self._open.get(conversation)
        if question is None or question.asker != person or question.answer.done():
            return False
        question.answer.set_result(yes)
        return True

    def waiting(self, conversation: str) -> bool:
        """Whether a question is open in this conversation."""
        return conversation in self._open
