"""Errors the core knows how to turn into a short reply or a clean exit."""

from __future__ import annotations

from typing import Literal

LLMErrorKind = Literal[
    "rate_limited",  # 429 after retries
    "unavailable",  # 5xx / connection refused after retries
    "context_too_long",  # 400 context length
    "timeout",  # no answer within the total deadline
    "interrupted",  # the stream broke after text had arrived
    "auth",  # 401/403: bad key
    "bad_request",  # any other 4xx
]


class LLMError(Exception):
    """A model call that failed for good; ``kind`` picks the user-facing text."""

    def __init__(self, kind: LLMErrorKind, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind: LLMErrorKind = kind
        self.detail = detail


class StartupError(Exception):
    """A problem found at start (bad token, missing intent): one line, exit 2."""


class ConfigError(StartupError):
    """Invalid configuration; the message names the key path and the problem."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"config: {path}: {problem}")
        self.path = path
        self.problem = problem
