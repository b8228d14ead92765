"""MCP servers through the real SDK: stdio and streamable HTTP on 127.0.0.1, the
allowlist, a server that is down (hidden, retried, back), and `check`'s report."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from bot.tools.config import ToolServerConfig
from bot.tools.hub import ToolHub
from bot.tools.wiring import check_tools_servers
from bot.types import ConversationKey
from tests.tools_support import (
    CONNECT_WAIT_S,
    connected_hub,
    free_port,
    http_server,
    http_server_on,
    stdio_server,
    tools_config,
)

CONSOLE = ConversationKey("console", "local", "default")
SECRET = "s3cret-header-value"


def names(hub: ToolHub, key: ConversationKey = CONSOLE) -> list[str]:
    return sorted(spec.name for spec in hub.available(key))


async def until_state(hub: ToolHub, state: str) -> None:
    async with asyncio.timeout(CONNECT_WAIT_S):
        while hub.links[0].state != state:  # noqa: ASYNC110 - polled: a link has no event per state
            await asyncio.sleep(0.02)


async def test_stdio_server_tools_are_listed_and_called() -> None:
    async with connected_hub(tools_config(stdio_server())) as hub:
        assert names(hub) == ["calculate", "fail", "list_notes", "read_note", "save_note", "wait"]
        (calc,) = [s for s in hub.available(CONSOLE) if s.name == "calculate"]
        assert calc.parameters["required"] == ["expression"]
        output = await hub.call(calc, {"expression": "(2 + 3) * 4"})
        assert (output.text, output.is_error) == ("20", False)


async def test_the_allowlist_hides_the_other_tools_and_confirm_marks_actions() -> None:
    server = stdio_server(allow=("calculate", "save_note"), confirm=("save_note",))
    async with connected_hub(tools_config(server)) as hub:
        specs = {s.name: s for s in hub.available(CONSOLE)}
        assert sorted(specs) == ["calculate", "save_note"]
        assert specs["save_note"].confirm and not specs["calculate"].confirm


async def test_tools_are_off_in_channels_until_enabled_there() -> None:
    cfg = tools_config(stdio_server(), enabled_in=("console", "slack:T1:C1"))
    async with connected_hub(cfg) as hub:
        assert names(hub, ConversationKey("discord", "G1", "C1")) == []
        assert names(hub, ConversationKey("slack", "T1", "C2")) == []
        assert "calculate" in names(hub, ConversationKey("slack", "T1", "C1"))


async def test_streamable_http_server_works_with_headers() -> None:
    async with http_server() as url:
        server = ToolServerConfig(name="web", url=url, headers={"Authorization": SECRET})
        async with connected_hub(tools_config(server)) as hub:
            assert "calculate" in names(hub)
            (calc,) = [s for s in hub.available(CONSOLE) if s.name == "calculate"]
            assert (await hub.call(calc, {"expression": "2 ** 8"})).text == "256"


async def test_a_server_that_is_down_is_hidden_retried_and_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    server = ToolServerConfig(name="late", url=url, headers={"Authorization": SECRET})
    with caplog.at_level(logging.WARNING):
        async with connected_hub(tools_config(server, retry_max_s=0.2)) as hub:
            await until_state(hub, "down")
            assert names(hub) == [] and hub.down_servers() == ["late"]
            async with http_server_on(port):
                await until_state(hub, "up")
                assert "calculate" in names(hub)
    assert "MCP server late unavailable" in caplog.text
    assert SECRET not in caplog.text


async def test_a_server_that_cannot_start_never_stops_the_hub() -> None:
    broken = ToolServerConfig(
        name="broken", command=sys.executable, args=("-c", "raise SystemExit(3)")
    )
    async with connected_hub(tools_config(broken, stdio_server())) as hub:
        await until_named_up(hub, "notes")
        assert "calculate" in names(hub)
        assert hub.down_servers() == ["broken"]


def test_check_reports_each_server_and_never_shows_secrets() -> None:
    bad = ToolServerConfig(
        name="nowhere", url=f"http://127.0.0.1:{free_port()}/mcp", headers={"X-Key": SECRET}
    )
    lines = check_tools_servers(tools_config(stdio_server(), bad))
    assert lines[0].startswith("notes: up, tools: calculate")
    assert lines[1].startswith("nowhere: down (")
    assert SECRET not in "\n".join(lines)


async def until_named_up(hub: ToolHub, name: str) -> None:
    async with asyncio.timeout(CONNECT_WAIT_S):
        while not any(link.name == name and link.state == "up" for link in hub.links):  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_server_that_drops_gives_an_error_result_and_comes_back() -> None:
    port = free_port()
    server = ToolServerConfig(name="web", url=f"http://127.0.0.1:{port}/mcp")
    async with connected_hub(tools_config(server, retry_max_s=0.2)) as hub:
        async with http_server_on(port):
            await until_state(hub, "up")
            (calc,) = [s for s in hub.available(CONSOLE) if s.name == "calculate"]
        output = await hub.call(calc, {"expression": "1 + 1"})  # the server is gone
        assert output.is_error and "unavailable" in output.text
        await until_state(hub, "down")
        assert names(hub) == []
        async with http_server_on(port):
            await until_state(hub, "up")
            assert (await hub.call(calc, {"expression": "1 + 1"})).text == "2"
