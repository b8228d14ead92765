"""The ``tools`` section of config.yaml: MCP servers and where tools are on.

Built by bot/config.py like every other section; the checks that involve more
than one key are :func:`check_tools`. ``env`` and ``headers`` values are secrets
(they usually come from ``${VAR}``): ``python -m bot check`` shows them as set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import ConfigError
from bot.redact import redact_url

ALL = "*"  # in allow/confirm: every tool of the server
SERVER_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SECRET_MAP: Mapping[str, Any] = {"secret": True}


@dataclass(frozen=True, slots=True)
class ToolServerConfig:
    """One MCP server: a command to start (stdio) or a streamable-HTTP URL."""

    name: str = field(default="", metadata={"nonempty": True})
    command: str = ""  # stdio: the program to start
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False, metadata=_SECRET_MAP)
    url: str = field(default="", repr=False, metadata={"url": True})  # streamable HTTP
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, metadata=_SECRET_MAP)
    allow: tuple[str, ...] = (ALL,)  # the tools offered to the model; "*": all
    confirm: tuple[str, ...] = ()  # tools that run only after the asker approves

    def allows(self, tool: str) -> bool:
        """Whether the allowlist lets the model see ``tool``."""
        return ALL in self.allow or tool in self.allow

    def needs_confirm(self, tool: str) -> bool:
        """Whether ``tool`` waits for the asker's approval."""
        return ALL in self.confirm or tool in self.confirm


@dataclass(frozen=True, slots=True)
class ToolsConfig:
    """Tool use through MCP servers (off unless servers are listed)."""

    servers: tuple[ToolServerConfig, ...] = ()
    # Where tools are on: "console", "discord", "slack:T123", "discord:GUILD:CHANNEL".
    # A conversation matches an entry naming its platform, workspace and channel, or a
    # prefix of them. Default: the console only (channels stay off until listed).
    enabled_in: tuple[str, ...] = ("console",)
    max_rounds: int = field(default=5, metadata={"min": 1, "max": 50})
    call_timeout_s: float = field(default=30.0, metadata={"gt": 0})
    total_timeout_s: float = field(default=120.0, metadata={"gt": 0})
    result_tokens: int = field(default=2000, metadata={"min": 50, "max": 100_000})
    approval_timeout_s: float = field(default=120.0, metadata={"gt": 0})
    connect_timeout_s: float = field(default=20.0, metadata={"gt": 0})
    retry_max_s: float = field(default=300.0, metadata={"gt": 0})  # backoff cap


def check_tools(tools: ToolsConfig) -> None:
    """Checks across keys: unique names, exactly one of command and url."""
    seen: set[str] = set()
    for index, server in enumerate(tools.servers):
        path = f"tools.servers[{index}]"
        if not SERVER_NAME.fullmatch(server.name):
            raise ConfigError(
                f"{path}.name", f"must be 1-32 letters, digits, _ or -, got {server.name!r}"
            )
        if server.name in seen:
            raise ConfigError(f"{path}.name", f"duplicate server name {server.name!r}")
        seen.add(server.name)
        if bool(server.command) == bool(server.url):
            raise ConfigError(path, "set either command (stdio) or url (streamable HTTP)")
        if server.url and not server.url.startswith(("http://", "https://")):
            shown = redact_url(server.url)
            raise ConfigError(f"{path}.url", f"must start with http:// or https://, got {shown!r}")
    if tools.call_timeout_s > tools.total_timeout_s:
        raise ConfigError("tools.call_timeout_s", "must not exceed tools.total_timeout_s")


def enabled_for(patterns: tuple[str, ...], platform: str, workspace: str, channel: str) -> bool:
    """Whether an ``enabled_in`` entry covers this conversation."""
    parts = (platform, workspace, channel)
    for pattern in patterns:
        wanted = tuple(pattern.split(":"))
        if 0 < len(wanted) <= 3 and parts[: len(wanted)] == wanted:
            return True
    return False
