"""Tool calls streamed by an OpenAI-compatible server, put back together.

A streamed answer sends each call in fragments: the first names its ``index``,
``id`` and function name, later ones append pieces of the JSON arguments. The
fragments are read defensively (servers differ) and bounded: at most
MAX_CALLS calls per answer and MAX_ARGUMENT_CHARS of arguments each; what is cut
no longer parses, so the loop reports it to the model as malformed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_CALLS = 16
MAX_ARGUMENT_CHARS = 32_000
MAX_NAME_CHARS = 128


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for; ``arguments`` is its JSON text, unchecked."""

    id: str
    name: str
    arguments: str

    def as_message_entry(self) -> dict[str, Any]:
        """The entry in an assistant message's ``tool_calls``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(slots=True)
class _Partial:
    id: str = ""
    name: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    size: int = 0


class ToolCallAccumulator:
    """Collects the tool-call fragments of one streamed answer."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, _Partial] = {}

    def add_chunk(self, chunk: dict[str, Any]) -> bool:
        """Take the chunk's tool-call fragments; True if it had any."""
        fragments = _fragments(chunk)
        for position, fragment in enumerate(fragments):
            self._add(fragment, position)
        return bool(fragments)

    def calls(self) -> list[ToolCall]:
        """The calls so far, in index order; a call without an id gets one."""
        out = []
        for index in sorted(self._calls):
            partial = self._calls[index]
            name = "".join(partial.name)[:MAX_NAME_CHARS]
            out.append(ToolCall(partial.id or f"call_{index}", name, "".join(partial.arguments)))
        return out

    def _add(self, fragment: Any, position: int) -> None:
        if not isinstance(fragment, dict):
            return
        index = fragment.get("index")
        if not isinstance(index, int):
            index = position
        partial = self._calls.get(index)
        if partial is None:
            if len(self._calls) >= MAX_CALLS:
                return
            partial = self._calls[index] = _Partial()
        if isinstance(fragment.get("id"), str) and not partial.id:
            partial.id = fragment["id"][:MAX_NAME_CHARS]
        function = fragment.get("function")
        if not isinstance(function, dict):
            return
        name, arguments = function.get("name"), function.get("arguments")
        if isinstance(name, str):
            partial.name.append(name)
        if isinstance(arguments, str) and partial.size < MAX_ARGUMENT_CHARS:
            piece = arguments[: MAX_ARGUMENT_CHARS - partial.size]
            partial.arguments.append(piece)
            partial.size += len(piece)


def _fragments(chunk: dict[str, Any]) -> list[Any]:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return []
    delta = choices[0].get("delta")
    if not isinstance(delta, dict):
        return []
    calls = delta.get("tool_calls")
    return calls if isinstance(calls, list) else []
