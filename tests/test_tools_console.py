"""The try-out: ``python -m bot console`` with the example MCP server configured
lists its tools, uses them against the fake model, and asks before an action."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fakes.fake_openai import FakeOpenAI, reply, tool_calls
from tests.support import RUN_LIMIT_S, bot_env, run_bot, spawn_bot

CONFIG = """
tools:
  servers:
    - name: notes
      command: python
      args: ["-m", "examples.mcp_notes_server"]
      env:
        NOTES_TOKEN: ${NOTES_TOKEN}
      confirm: [save_note]
"""
TOKEN = "notes-token-value"


def config(tmp_path: Path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return str(path)


async def test_the_console_lists_and_uses_the_example_servers_tools(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(tool_calls(("calculate", {"expression": "6 * 7"})), reply("It is 42."))
    env = bot_env(tmp_path, fake_openai, NOTES_TOKEN=TOKEN)
    code, out, err = await run_bot(
        ["console", "--config", config(tmp_path)], env, b"!tools\nwhat is 6 times 7?\n"
    )
    assert code == 0, err
    assert "- `calculate` (notes)" in out and "- `save_note` ✋ (notes)" in out
    assert "Running `calculate`" in out and "It is 42." in out
    assert fake_openai.chat_requests[1]["messages"][-1]["content"] == "42"
    assert TOKEN not in out + err


async def test_the_console_asks_before_an_action_and_runs_it_on_yes(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(
        tool_calls(("save_note", {"title": "todo", "text": "milk"})), reply("Saved it.")
    )
    env = bot_env(tmp_path, fake_openai, NOTES_TOKEN=TOKEN)
    proc = await spawn_bot("console", "--config", config(tmp_path), env=env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"remember milk\n")
    await proc.stdin.drain()
    seen = b""
    async with asyncio.timeout(RUN_LIMIT_S):
        while b"wants to run `save_note`" not in seen:
            seen += await proc.stdout.read(1024)
        proc.stdin.write(b"!yes\n")
        proc.stdin.close()
        out, err = await proc.communicate()
    text = (seen + out).decode()
    assert proc.returncode == 0, err.decode()
    assert "Allowed" in text and "Saved it." in text
    assert fake_openai.chat_requests[1]["messages"][-1]["content"] == "saved note 'todo'"


async def test_check_shows_the_server_up_and_its_secrets_hidden(tmp_path: Path) -> None:
    env = bot_env(tmp_path, NOTES_TOKEN=TOKEN)
    code, out, err = await run_bot(["check", "--config", config(tmp_path)], env)
    assert code == 0, err
    assert "# tools server notes: up, tools: calculate" in out
    assert "NOTES_TOKEN: '***set***'" in out
    assert TOKEN not in out + err
