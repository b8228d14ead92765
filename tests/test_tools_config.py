"""The tools section of config.yaml: each problem names its field; secrets stay hidden."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from bot.config import config_from_dict, format_config
from bot.errors import ConfigError
from tests.support import ROOT

SECRET = "very-secret-token"


def load(tools: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return config_from_dict({"openai": {"api_key": "sk-x"}, "tools": tools}, env or {})


@pytest.mark.parametrize(
    ("tools", "path", "problem"),
    [
        ({"servers": [{"name": "a"}]}, "tools.servers[0]", "either command"),
        (
            {"servers": [{"name": "a", "command": "x", "url": "http://h/mcp"}]},
            "tools.servers[0]",
            "either command",
        ),
        ({"servers": [{"name": "a b", "command": "x"}]}, "tools.servers[0].name", "letters"),
        (
            {"servers": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]},
            "tools.servers[1].name",
            "duplicate",
        ),
        ({"servers": [{"name": "a", "url": "ftp://h"}]}, "tools.servers[0].url", "http"),
        (
            {"servers": [{"name": "a", "command": "x", "env": ["A"]}]},
            "tools.servers[0].env",
            "section",
        ),
        (
            {"servers": [{"name": "a", "command": "x", "cmd": "y"}]},
            "tools.servers[0].cmd",
            "unknown",
        ),
        ({"servers": {"name": "a"}}, "tools.servers", "list"),
        ({"max_rounds": 0}, "tools.max_rounds", "between"),
        ({"call_timeout_s": 200}, "tools.call_timeout_s", "total_timeout_s"),
    ],
)
def test_a_bad_value_names_its_field(tools: dict[str, Any], path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tools)
    assert caught.value.path == path
    assert problem in str(caught.value)


def test_secrets_come_from_the_environment_and_check_hides_them() -> None:
    server = {
        "name": "web",
        "url": "http://user:pw@127.0.0.1:9/mcp",
        "headers": {"Authorization": "Bearer ${TOKEN}"},
    }
    stdio = {"name": "notes", "command": "python", "env": {"KEY": "${TOKEN}"}}
    cfg = load({"servers": [server, stdio]}, {"TOKEN": SECRET})
    assert cfg.tools.servers[0].headers == {"Authorization": f"Bearer {SECRET}"}
    assert cfg.tools.servers[1].env == {"KEY": SECRET}
    shown = format_config(cfg) + repr(cfg)
    assert SECRET not in shown and ":pw@" not in shown
    assert "Authorization: '***set***'" in shown


def test_defaults_are_console_only_and_no_servers() -> None:
    cfg = load({})
    assert cfg.tools.servers == () and cfg.tools.enabled_in == ("console",)


def test_without_servers_the_mcp_sdk_is_never_imported() -> None:
    probe = "import sys, bot.app, bot.__main__; print('mcp' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"  # half a second of start-up saved
