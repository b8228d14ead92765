"""Where the core meets the tools: which model answers, approvals, what is stored.

The core asks :class:`ToolUse` for the model of each answer: the plain model, or
a :class:`~bot.tool_loop.ToolingModel` when tools are on in the conversation
and some are connected. The loop's messages are stored with the answer (a JSON
list in ``Turn.tools``) and put back before it in later prompts by
:func:`expand_tool_turns`, so follow-ups can refer to them; the turn's token
count covers them, so trimming drops them with their answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from .sanitize import parse_command
from .texts import Texts
from .tokens import TokenCounter
from .tool_loop import LoopLimits, ToolingModel, ToolSource
from .tool_status import SinkToolUI
from .tools.approval import Approvals
from .types import ChatMessage, ChatModel, IncomingMessage, ReplySink

log = logging.getLogger(__name__)

TOOLS_KEY = "tools"  # marks a history message whose tool exchange goes before it
YES, NO = "yes", "no"
MAX_STORED_CHARS = 200_000  # a stored exchange bigger than this is left out of history


def approval_reply(text: str, prefix: str) -> bool | None:
    """True for ``!yes``, False for ``!no`` (any case), None for any other text."""
    command = parse_command(text.strip(), prefix)
    if command is None or command.name.lower() not in (YES, NO):
        return None
    return command.name.lower() == YES


class ToolUse:
    """The core's one handle on tools (a no-op when no servers are configured)."""

    def __init__(
        self, source: ToolSource | None, limits: LoopLimits, counter: TokenCounter, texts: Texts
    ) -> None:
        self._source = source
        self._limits = limits
        self._counter = counter
        self._texts = texts
        self.approvals = Approvals()

    def answers_question(self, msg: IncomingMessage, prefix: str) -> bool:
        """Take ``!yes`` / ``!no`` from the asker of an open approval question."""
        conv = msg.key.as_str()
        if not self.approvals.waiting(conv):
            return False
        allowed = approval_reply(msg.text, prefix)
        if allowed is None:
            return False
        return self.approvals.answer(conv, msg.author_id, allowed)

    def model_for(
        self, model: ChatModel, msg: IncomingMessage, sink: ReplySink
    ) -> tuple[ChatModel, ToolingModel | None]:
        """The model for this answer: with the tool loop when tools are on here."""
        source = self._source
        if source is None or not source.enabled(msg.key):
            return model, None
        tools = source.available(msg.key)
        if not tools:
            return model, None
        ui = SinkToolUI(
            sink,
            self._texts,
            self.approvals,
            conversation=msg.key.as_str(),
            asker=msg.author_id,
            approval_timeout_s=self._limits.approval_timeout_s,
        )
        tooling = ToolingModel(
            model,
            source,
            tools,
            limits=self._limits,
            counter=self._counter,
            ui=ui,
            truncated_note=self._texts.get("tool_result_truncated"),
            round_limit_note=self._texts.get("tools_round_limit"),
        )
        return tooling, tooling

    def stored(self, exchange: Sequence[ChatMessage]) -> tuple[str | None, int]:
        """The exchange as stored with the answer, and its token count."""
        if not exchange:
            return None, 0
        text = json.dumps(list(exchange), ensure_ascii=False)
        if len(text) > MAX_STORED_CHARS:
            log.info("a tool exchange of %d chars is not kept in history", len(text))
            return None, 0
        return text, self._counter.count(text)


def expand_tool_turns(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Put each stored tool exchange back before the answer that used it."""
    if not any(TOOLS_KEY in message for message in messages):
        return messages
    out: list[ChatMessage] = []
    for message in messages:
        stored = message.get(TOOLS_KEY)
        if stored is None:
            out.append(message)
            continue
        out += _exchange(stored)
        out.append({k: v for k, v in message.items() if k != TOOLS_KEY})
    return out


def _exchange(stored: str) -> list[ChatMessage]:
    try:
        loaded = json.loads(stored)
    except ValueError:
        return []
    if not isinstance(loaded, list):
        return []
    return [m for m in loaded if isinstance(m, dict)]
