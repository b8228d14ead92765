"""``logging.format: json`` end to end: `python -m bot console` against the fake
OpenAI, its stderr read line by line."""

from __future__ import annotations

import json
from pathlib import Path

from fakes.fake_openai import FakeOpenAI, reply, server_error
from tests.support import SECRETS, bot_env, run_bot


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
