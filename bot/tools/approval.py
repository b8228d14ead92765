"""Questions waiting for the asker's yes or no (``confirm`` tools).

One question at a time per conversation. Only the person who asked the bot can
answer it: with a message of their own (``!yes`` / ``!no``) or a button an adapter
showed (:class:`ApprovalSink`; the press names the question by its token).
Nothing a model or a tool writes reaches here, so the result of one tool can
never approve another.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

MAX_PENDING = 1000  # questions open at once across the process; more are refused
ACTION_PREFIX = "tool-approval"  # button ids: tool-approval:<token>:yes|no


@runtime_checkable
class ApprovalSink(Protocol):
    """A sink that can ask with buttons (Discord components, Slack block actions)."""

    async def ask_approval(self, text: str, token: str, allow: str, deny: str) -> str:
        """Post ``text`` with buttons labelled ``allow`` and ``deny`` for question
        ``token`` (ids from :func:`action_id`); the message's id."""
        ...


def action_id(token: str, yes: bool) -> str:
    """The id of a question's approve or deny button."""
    return f"{ACTION_PREFIX}:{token}:{'yes' if yes else 'no'}"


def parse_action_id(value: str) -> tuple[str, bool] | None:
    """(token, yes) of a button id made by :func:`action_id`, else None."""
    prefix, _, rest = value.partition(":")
    token, _, answer = rest.partition(":")
    if prefix != ACTION_PREFIX or not token or answer not in ("yes", "no"):
        return None
    return token, answer == "yes"


@dataclass(slots=True)
class _Question:
    conversation: str
    asker: str
    answer: asyncio.Future[bool]


class Approvals:
    """Open questions, by token and by conversation."""

    def __init__(self) -> None:
        self._by_token: dict[str, _Question] = {}
        self._by_conversation: dict[str, str] = {}

    def open(self, conversation: str, asker: str) -> str | None:
        """Open a question; its token, or None when one is open here or too many are."""
        if conversation in self._by_conversation or len(self._by_token) >= MAX_PENDING:
            return None
        token = secrets.token_hex(8)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._by_token[token] = _Question(conversation, asker, future)
        self._by_conversation[conversation] = token
        return token

    async def wait(self, token: str, wait_s: float) -> bool | None:
        """The answer: True yes, False no, None none within ``wait_s``; then closed."""
        question = self._by_token[token]
        try:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(question.answer), wait_s)
            return None
        finally:
            self._by_token.pop(token, None)
            self._by_conversation.pop(question.conversation, None)

    def answer(self, conversation: str, person: str, yes: bool) -> bool:
        """A text answer in the conversation; True if it answered ``person``'s question."""
        token = self._by_conversation.get(conversation)
        return token is not None and self.press(token, person, yes)

    def press(self, token: str, person: str, yes: bool) -> bool:
        """A button press; True if it answered an open question ``person`` asked."""
        question = self._by_token.get(token)
        if question is None or question.asker != person or question.answer.done():
            return False
        question.answer.set_result(yes)
        return True

    def waiting(self, conversation: str) -> bool:
        """Whether a question is open in this conversation."""
        return conversation in self._by_conversation
