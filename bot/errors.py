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
    "not_found",  # 404: no such model, or base_url is not the API's address
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


class PlatformUnavailable(StartupError):
    """A platform kept failing at start with an error that may pass (a rate limit, a
    server error), tried a few times: one line, exit 1, since no setting is wrong."""


# The path of a problem with the config file as a whole (not found, not YAML, ...).
WHOLE_FILE = "config"


class ConfigError(StartupError):
    """Invalid configuration; the message names the key path and the problem."""

    def __init__(self, path: str, problem: str, *, names_source: bool = False) -> None:
        """``names_source``: the problem names the environment variable the file
        took this key from (so the usual variable for the key is not added)."""
        # "config: file not found", not "config: config: file not found"
        where = "" if path == WHOLE_FILE else f"{path}: "
        super().__init__(f"config: {where}{problem}")
        self.path = path
        self.problem = problem
        self.names_source = names_source


class StorageError(Exception):
    """The store failed while a message arrived (disk full, file locked, I/O error).

    Raised by ``Core.handle`` / ``Core.run_command``: the message was NOT stored, so
    the adapter must not acknowledge it (Slack then delivers it again) or must tell
    the user. ``detail`` is the backend's one-line reason.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(f"storage: {detail}")
        self.detail = detail


class PlatformRefused(Exception):
    """The platform refused a write for a reason no retry fixes (no permission, the
    bot is not in the channel, a revoked token). Raised by a sink; its message is one
    line the operator can act on."""


class ShuttingDown(Exception):
    """The core no longer takes messages: the adapter must not acknowledge this one."""


class StoreFailure(Exception):
    """A storage backend's own failure (a lost connection, a refused statement),
    raised by backends whose driver bot/ must not import; bot/storage_guard.py
    turns it into StorageError like sqlite3.Error."""
