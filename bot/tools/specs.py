"""What the tool loop knows of a tool and of a call's result (no SDK here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool as the model sees it, and where it lives."""

    server: str
    name: str
    description: str
    parameters: Mapping[str, Any]  # JSON schema of the arguments
    confirm: bool  # runs only after the asker approves

    def as_openai(self) -> dict[str, Any]:
        """The Chat Completions ``tools`` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters) or {"type": "object", "properties": {}},
            },
        }


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What a call returned: text for the model, and whether it is an error."""

    text: str
    is_error: bool
