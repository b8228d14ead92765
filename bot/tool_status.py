"""What people see while tools run: one status message, edited as calls go on.

The message names the tool (and a short reason when it failed); on platforms that
cannot edit, each change is a new message. Writes go through the conversation's
sink, so the platforms' no-ping rules apply to a tool's error text too. Status
writes never break the answer: a failed one is logged and skipped.
"""

from __future__ import annotations

import logging

from .texts import Texts
from .tools.approval import Approvals, ApprovalSink
from .tools.specs import ToolSpec
from .types import ReplySink

log = logging.getLogger(__name__)


class SinkToolUI:
    """bot.tool_loop.ToolUI over a conversation's sink."""

    def __init__(
        self,
        sink: ReplySink,
        texts: Texts,
        approvals: Approvals,
        *,
        conversation: str,
        asker: str,
        approval_timeout_s: float,
    ) -> None:
        self._sink = sink
        self._texts = texts
        self._approvals = approvals
        self._conversation = conversation
        self._asker = asker
        self._timeout = approval_timeout_s
        self._status_id: str | None = None

    async def running(self, spec: ToolSpec) -> None:
        await self._sink.typing()
        await self._show(self._texts.get("tool_running", tool=spec.name))

    async def finished(self, spec: ToolSpec, error: str | None) -> None:
        if error is None:
            await self._show(self._texts.get("tool_done", tool=spec.name))
        else:
            await self._show(self._texts.get("tool_failed", tool=spec.name, error=error))

    async def approve(self, spec: ToolSpec, arguments: str) -> bool | None:
        seconds = round(self._timeout)
        question = self._texts.get(
            "tool_approval", tool=spec.name, arguments=arguments, seconds=seconds
        )
        token = self._approvals.open(self._conversation, self._asker)
        if token is None:  # another question is open here
            return False
        await self._ask(question, token)
        verdict = await self._approvals.wait(token, self._timeout)
        key = {True: "tool_approved", False: "tool_denied", None: "tool_approval_timeout"}
        await self._send(self._texts.get(key[verdict], tool=spec.name))
        return verdict

    async def _ask(self, question: str, token: str) -> None:
        """With buttons where the platform has them; the text names !yes / !no too."""
        sink = self._sink
        if isinstance(sink, ApprovalSink):
            try:
                allow, deny = self._texts.get("tool_allow"), self._texts.get("tool_deny")
                await sink.ask_approval(question, token, allow, deny)
                return
            except Exception as exc:
                log.warning("could not show approval buttons (%s); asking in text", exc)
        await self._send(question)

    async def _show(self, text: str) -> None:
        try:
            if self._status_id is not None and self._sink.limits.can_edit:
                await self._sink.edit(self._status_id, text)
            else:
                self._status_id = await self._sink.send(text)
        except Exception as exc:  # a status line is worth less than the answer
            log.warning("could not show a tool status: %s", exc)

    async def _send(self, text: str) -> None:
        try:
            await self._sink.send(text)
        except Exception as exc:
            log.warning("could not send a tool message: %s", exc)
