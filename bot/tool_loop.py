"""The tool loop, in our code: model → tool calls → results → model, until it answers.

:class:`ToolingModel` is a :class:`~bot.types.ChatModel` for one answer. Each
round offers the conversation's tools; the calls the model makes in a round run
in parallel (after the asker approves those marked ``confirm``), and their
results go back as ``tool`` messages only, never as system text: a result is
untrusted input. Bounds: ``max_rounds`` rounds with tools (then one last round
without them, so the model must answer in words), a timeout per call, a total
deadline, and each result cut to ``result_tokens`` with a note saying so.

The messages the loop added (assistant tool calls and tool results) are kept in
:attr:`ToolingModel.exchange` for the core to store with the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .tokens import TokenCounter
from .tool_calls import ToolCall
from .tools.specs import ToolOutput, ToolSpec
from .types import Answer, ChatMessage, ChatModel, ConversationKey, Usage

log = logging.getLogger(__name__)

ERROR_SHOWN_CHARS = 120  # of a tool's error, in the status line people see
ARGUMENTS_SHOWN_CHARS = 300  # of a call's arguments, in an approval question


@dataclass(frozen=True, slots=True)
class LoopLimits:
    """The bounds of one answer's tool use (from ``tools`` in config.yaml)."""

    max_rounds: int = 5
    call_timeout_s: float = 30.0
    total_timeout_s: float = 120.0
    result_tokens: int = 2000
    approval_timeout_s: float = 120.0


class ToolSource(Protocol):
    """Where tools come from (bot/tools/hub.py's ToolHub)."""

    def enabled(self, key: ConversationKey) -> bool: ...

    def available(self, key: ConversationKey) -> list[ToolSpec]: ...

    async def call(self, spec: ToolSpec, arguments: dict[str, object]) -> ToolOutput: ...

    def down_servers(self) -> list[str]: ...


class ToolUI(Protocol):
    """What people see of the tools while an answer runs (bot/tool_status.py)."""

    async def running(self, spec: ToolSpec) -> None:
        """A call started."""

    async def finished(self, spec: ToolSpec, error: str | None) -> None:
        """A call ended; ``error`` is a short reason when it failed."""

    async def approve(self, spec: ToolSpec, arguments: str) -> bool | None:
        """Ask the asker; True approved, False denied, None no answer in time."""


class ToolingModel:
    """A ChatModel that runs the tool loop around another ChatModel, for one answer."""

    def __init__(
        self,
        model: ChatModel,
        source: ToolSource,
        tools: Sequence[ToolSpec],
        *,
        limits: LoopLimits,
        counter: TokenCounter,
        ui: ToolUI,
        truncated_note: str,
        round_limit_note: str,
    ) -> None:
        self._model = model
        self._source = source
        self._tools = {spec.name: spec for spec in tools}
        self._offered = [spec.as_openai() for spec in tools]
        self._limits = limits
        self._counter = counter
        self._ui = ui
        self._truncated_note = truncated_note
        self._round_limit_note = round_limit_note
        self.exchange: list[ChatMessage] = []

    async def stream(
        self, messages: list[ChatMessage], answer: Answer
    ) -> AsyncGenerator[str, None]:
        """Yield the text of every round; run the tools the model calls in between."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._limits.total_timeout_s
        convo = list(messages)
        for round_no in range(self._limits.max_rounds + 1):
            last = round_no == self._limits.max_rounds or loop.time() >= deadline
            step = Answer(tools=() if last else self._offered)
            deltas = self._model.stream(convo, step)
            try:
                async for delta in deltas:
                    answer.text += delta
                    yield delta
            finally:
                await deltas.aclose()
            answer.usage = _add(answer.usage, step.usage)
            calls = step.tool_calls.calls() if step.tool_calls is not None else []
            if last and not step.text:  # out of rounds and still no words: say why
                log.info("tool loop: no answer after %d round(s)", round_no)
                answer.text += self._round_limit_note
                yield self._round_limit_note
            if last or not calls:
                return
            added = await self._round(calls, deadline)
            convo += added
            self.exchange += added

    async def _round(self, calls: list[ToolCall], deadline: float) -> list[ChatMessage]:
        """Run one round's calls (approvals first, one at a time); the messages to add."""
        decided = [await self._decide(call) for call in calls]
        outputs = await asyncio.gather(
            *(self._run(call, plan, deadline) for call, plan in zip(calls, decided, strict=True))
        )
        assistant: ChatMessage = {
            "role": "assistant",
            "content": None,  # any text of this round is in the answer itself
            "tool_calls": [call.as_message_entry() for call in calls],
        }
        results: list[ChatMessage] = [
            {"role": "tool", "tool_call_id": call.id, "content": self._bounded(output)}
            for call, output in zip(calls, outputs, strict=True)
        ]
        return [assistant, *results]

    async def _decide(self, call: ToolCall) -> tuple[ToolSpec, dict[str, Any]] | ToolOutput:
        """What to run for ``call``, or the error result the model gets instead."""
        spec = self._tools.get(call.name)
        if spec is None:
            return ToolOutput(f"error: there is no tool named {call.name!r}", True)
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError as exc:
            return ToolOutput(f"error: the arguments are not valid JSON ({exc})", True)
        if not isinstance(arguments, dict):
            return ToolOutput("error: the arguments must be a JSON object", True)
        if spec.confirm:
            shown = call.arguments[:ARGUMENTS_SHOWN_CHARS]
            verdict = await self._ui.approve(spec, shown)
            if verdict is None:
                return ToolOutput("error: the user did not approve this action in time", True)
            if not verdict:
                return ToolOutput("error: the user denied this action", True)
        return spec, arguments

    async def _run(
        self, call: ToolCall, plan: tuple[ToolSpec, dict[str, Any]] | ToolOutput, deadline: float
    ) -> ToolOutput:
        if isinstance(plan, ToolOutput):
            log.info("tool call %s refused: %s", call.name, plan.text)
            return plan
        spec, arguments = plan
        await self._ui.running(spec)
        loop = asyncio.get_running_loop()
        limit = max(min(self._limits.call_timeout_s, deadline - loop.time()), 0.0)
        try:
            async with asyncio.timeout(limit):
                output = await self._source.call(spec, arguments)
        except TimeoutError:
            output = ToolOutput(f"error: the tool did not answer within {limit:g}s", True)
        except Exception as exc:  # a tool must never break the answer
            log.warning("tool %s failed: %s: %s", spec.name, type(exc).__name__, exc)
            output = ToolOutput("error: the tool failed", True)
        await self._ui.finished(spec, output.text[:ERROR_SHOWN_CHARS] if output.is_error else None)
        return output

    def _bounded(self, output: ToolOutput) -> str:
        """The result as the model gets it, cut to the token budget with a note."""
        limit = self._limits.result_tokens
        total = self._counter.count(output.text)
        if total <= limit:
            return output.text
        kept = self._counter.truncate(output.text, limit)
        return kept + "\n\n" + self._truncated_note.format(shown=limit, total=total)


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens)
