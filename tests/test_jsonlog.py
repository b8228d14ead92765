"""``logging.format: json``: `python -m bot console` against the fake OpenAI, its
stderr read line by line; and at INFO, a Discord conversation's log lines."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from bot.core import Core
from bot.jsonlog import JsonFormatter
from bot.redact import RedactingFilter
from fakes.fake_discord import FakeDiscord
from fakes.fake_openai import FakeOpenAI, reply, server_error
from tests.support import (
    ALICE,
    GENERAL,
    SECRETS,
    answered,
    bot_env,
    fake_discord,
    mention,
    run_bot,
)
from tests.support import running_discord as running

__all__ = ["fake_discord"]  # the fixture, used by name


async def test_json_logs_are_one_object_per_line_with_the_answers_ids(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(server_error(500), reply("Fine."))  # a retry: a WARNING mid-answer
    env = bot_env(tmp_path, fake_openai, LOG_FORMAT="json")
    code, out, err = await run_bot(["console"], env, b"my pineapple question\n")
    assert code == 0 and "Fine." in out
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, err
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
    (retry,) = [line for line in lines if "retrying" in line["message"]]
    assert retry["level"] == "WARNING" and retry["logger"] == "bot.llm"
    assert retry["conversation"].startswith("console:") and retry["message_id"]
    assert retry["latency_s"] >= 0
    assert "pineapple" not in err
    assert SECRETS["OPENAI_API_KEY"] not in err


async def test_at_info_the_json_lines_of_a_discord_conversation_carry_no_message_text(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    fake_openai.script(server_error(500), reply("The secret answer is mango."))
    try:
        async with running(fake_discord, memory_core):
            await fake_discord.send_message(
                GENERAL,
                ALICE,
                mention(fake_discord, "tell me the pineapple secret"),
                mentions=(fake_discord.bot,),
            )
            await answered(fake_discord, memory_core, GENERAL)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert any(line["level"] == "INFO" for line in lines)
    tagged = [line for line in lines if "conversation" in line]
    assert tagged and all(line["conversation"].startswith("discord:") for line in tagged)
    text = written.getvalue()
    assert "pineapple" not in text and "mango" not in text
