"""`python -m bot` as a user runs it: a real subprocess, real stdin/stdout, exit codes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import time
from asyncio.subprocess import Process
from pathlib import Path

import pytest

from bot.__main__ import EXIT_BROKEN_PIPE
from bot.errors import PlatformUnavailable
from bot.texts import Texts
from fakes.fake_openai import FakeOpenAI, reply
from tests.postgres_support import postgres_schema
from tests.support import (
    ROOT,
    RUN_LIMIT_S,
    SECRETS,
    bot_env,
    run_bot,
    skip_unless_local_model_installed,
    spawn_bot,
)

IMPORTING_S = 0.2
START_RETRYING_S = 2.5  # started, and waiting between two tries of Slack's auth.test
PROMPT_STOP_S = 3.0  # after start-up, while ``python -m bot`` still imports its libraries


def answers(stdout: str) -> list[str]:
    return [line.removeprefix("answer: ") for line in stdout.splitlines() if line]


async def asking(fake: FakeOpenAI, env: dict[str, str], lines: bytes) -> Process:
    """A console given ``lines``, once its first question reached the model."""
    proc = await spawn_bot("console", env=env)
    assert proc.stdin is not None
    proc.stdin.write(lines)
    await proc.stdin.drain()
    await fake.wait_for(lambda f: f.request_count == 1)
    return proc


async def test_console_reads_a_pipe_streams_answers_and_exits_0(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(
        reply("Nice to meet you, Ada.", chunks=6), reply("You said your name is Ada.")
    )
    code, out, err = await run_bot(
        ["console"], bot_env(tmp_path, fake_openai), b"my name is Ada\n\nwhat is my name?\n"
    )
    assert code == 0, err
    assert answers(out) == ["Nice to meet you, Ada.", "You said your name is Ada."]
    second = fake_openai.chat_requests[1]["messages"]
    assert [m["content"] for m in second[1:]] == [
        "my name is Ada",
        "Nice to meet you, Ada.",
        "what is my name?",
    ]
    assert SECRETS["OPENAI_API_KEY"] not in out + err


async def test_a_piped_console_asks_its_questions_one_after_another(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """A pipe hands over six lines at once; each waits for the answer before it, so
    none meets the per-person waiting cap (3) and every one is answered, in order."""
    fake_openai.script(*(reply(f"answer {n}", chunks=3) for n in range(1, 7)))
    lines = "".join(f"question {n}\n" for n in range(1, 7)).encode()
    code, out, err = await run_bot(["console"], bot_env(tmp_path, fake_openai), lines)
    assert code == 0, err
    assert answers(out) == [f"answer {n}" for n in range(1, 7)]
    asked = [r["messages"][-1]["content"] for r in fake_openai.chat_requests]
    assert asked == [f"question {n}" for n in range(1, 7)]


async def test_console_history_survives_a_restart(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    env = bot_env(tmp_path, fake_openai)
    code, _, err = await run_bot(["console"], env, b"remember the word pineapple\n")
    assert code == 0, err
    code, out, err = await run_bot(["console"], env, b"which word?\n")
    assert code == 0, err
    contents = [m["content"] for m in fake_openai.chat_requests[-1]["messages"]]
    assert "remember the word pineapple" in contents
    assert len(answers(out)) == 1


async def test_console_bad_input_and_commands(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    huge = "x" * 100_000
    lines = f"!help\n\x07\u200b\x00\n!nope\n{huge}\n".encode()
    code, out, err = await run_bot(["console"], bot_env(tmp_path, fake_openai), lines)
    assert code == 0, err
    assert "!reset" in out and "!system" in out
    assert "empty" in out.lower()
    assert "nope" in out
    assert fake_openai.request_count == 1  # only the huge message reached the model
    assert "Traceback" not in err


async def test_model_failure_is_a_short_line_not_a_crash(
    tmp_path: Path, no_proxy_env: None
) -> None:
    env = bot_env(tmp_path, OPENAI_BASE_URL="http://127.0.0.1:9/v1")  # nothing listens there
    env["BOT_CONFIG"] = str(
        _config(
            tmp_path,
            "openai:\n  max_retries: 0\n  request_timeout_s: 3\n  first_token_timeout_s: 2\n",
        )
    )
    code, out, err = await run_bot(["console"], env, b"hello?\nstill there?\n")
    assert code == 0, err
    assert len(answers(out)) == 2
    assert all("model" in a.lower() for a in answers(out))
    assert "Traceback" not in err


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("openai:\n  temperature: hot\n", "openai.temperature"),
        ("openai:\n  temprature: 0.5\n", "temperature"),
        ("storage:\n  url: ftp://x\n", "storage.url"),
        ("openai: [unclosed\n", "line"),
    ],
)
async def test_bad_config_names_the_key_and_exits_2(tmp_path: Path, text: str, needle: str) -> None:
    path = _config(tmp_path, text)
    code, _, err = await run_bot(["console", "--config", str(path)], bot_env(tmp_path))
    assert code == 2
    assert needle in err
    assert "Traceback" not in err


async def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    code, _, err = await run_bot(["--config", str(tmp_path / "nope.yaml")], bot_env(tmp_path))
    assert code == 2 and "not found" in err and "Traceback" not in err


async def test_check_prints_the_config_with_secrets_redacted(tmp_path: Path) -> None:
    env = bot_env(tmp_path, **SECRETS)
    code, out, err = await run_bot(["check"], env)
    assert code == 0, err
    assert "gpt-4o-mini" in out and "discord" in out
    for secret in SECRETS.values():
        assert secret not in out + err


async def test_check_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """``python -m bot check | head -1``: the reader is gone before the config is
    written (here: already at the start, so it always happens): no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = await spawn_bot("check", env=bot_env(tmp_path, **SECRETS), stdout=write_end)
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(), RUN_LIMIT_S)
    assert err.decode() == ""
    assert proc.returncode == EXIT_BROKEN_PIPE


async def test_console_into_a_closed_pipe_stops_quietly(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """``python -m bot console < questions | head -c 5``: once the reader is gone
    the console stops reading and exits 0, with no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        env = bot_env(tmp_path, fake_openai)
        proc = await spawn_bot("console", env=env, stdout=write_end)
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(b"one\ntwo\nthree\n"), RUN_LIMIT_S)
    assert proc.returncode == 0, err
    assert "Traceback" not in err.decode() and "Error" not in err.decode(), err
    assert fake_openai.request_count == 1  # the first answer found no reader; then it stopped


async def test_no_platform_configured_says_what_to_set(tmp_path: Path) -> None:
    code, _, err = await run_bot([], bot_env(tmp_path))
    assert code == 2
    assert "DISCORD_BOT_TOKEN" in err and "SLACK_BOT_TOKEN" in err and "console" in err
    assert "Traceback" not in err
    assert not (tmp_path / "bot.db").exists()  # nothing was started or created


async def test_nothing_set_names_the_key_and_the_platforms_at_once(tmp_path: Path) -> None:
    env = bot_env(tmp_path)
    del env["OPENAI_API_KEY"]
    code, _, err = await run_bot([], env)
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines), err
    assert "OPENAI_API_KEY" in lines[0]
    assert "DISCORD_BOT_TOKEN" in lines[1] and "SLACK_BOT_TOKEN" in lines[1]
    assert not (tmp_path / "bot.db").exists()


async def test_a_platform_set_without_a_key_names_only_the_key(tmp_path: Path) -> None:
    env = bot_env(tmp_path, DISCORD_BOT_TOKEN="x" * 40)
    del env["OPENAI_API_KEY"]
    code, _, err = await run_bot([], env)
    assert code == 2, err
    assert "OPENAI_API_KEY" in err and "DISCORD_BOT_TOKEN" not in err, err


async def test_sigterm_says_how_many_piped_lines_were_not_asked(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(reply("the first and only answer", ttft_s=1.0, chunks=3))
    lines = b"one\ntwo\n\nthree\nfour\n"  # the empty line is no question
    proc = await asking(fake_openai, bot_env(tmp_path, fake_openai), lines)
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), RUN_LIMIT_S)
    assert proc.returncode == 0, err.decode()
    assert answers(out.decode()) == ["the first and only answer"]
    assert "stopping: 3 line(s) read but not asked." in err.decode()


async def assert_cut_off_question_answered_first(fake: FakeOpenAI, env: dict[str, str]) -> None:
    """kill -9 while the model is silent on a question; the next console answers
    that question first, labelled, then its own."""
    fake.script(reply("never shown", ttft_s=30.0), reply("four"), reply("twelve"))
    proc = await asking(fake, env, b"what is two plus two?\n")
    proc.kill()
    await proc.wait()
    code, out, err = await run_bot(["console"], env, b"and times three?\n")
    assert code == 0, err
    recovered = Texts("en").get("console_answer_recovered")
    assert out.splitlines() == [f"{recovered}four", "answer: twelve"]


async def test_a_question_cut_off_by_sigkill_is_answered_at_the_next_start_and_says_so(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    await assert_cut_off_question_answered_first(fake_openai, bot_env(tmp_path, fake_openai))


async def test_on_postgresql_a_question_cut_off_by_sigkill_is_answered_first_at_the_next_start(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # On PostgreSQL the handoff answers what a dead instance left, not restart
    # recovery; the killed process is on this machine, so its lease is taken at once.
    async with postgres_schema() as url:
        env = bot_env(tmp_path, fake_openai, DATABASE_URL=url)
        await assert_cut_off_question_answered_first(fake_openai, env)


async def test_ctrl_c_while_the_libraries_load_exits_without_a_traceback(
    tmp_path: Path,
) -> None:
    # The imports take a few tenths of a second; Ctrl-C there used to print a
    # KeyboardInterrupt traceback from deep inside them.
    proc = await spawn_bot("console", env=bot_env(tmp_path))
    await asyncio.sleep(IMPORTING_S)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), RUN_LIMIT_S)
    # 130: it stopped in the imports; 0: it had reached the prompt; -SIGINT: on a slow
    # machine the signal came before Python itself had started.
    assert proc.returncode in (0, 130, -signal.SIGINT), err.decode()
    assert "Traceback" not in err.decode(), err.decode()


async def test_sigterm_while_a_platform_start_is_retried_stops_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:  # a Slack API nobody listens on: auth.test is retried
        taken.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{taken.getsockname()[1]}/api/"
    env = bot_env(tmp_path, SLACK_API_URL=nowhere)
    env.update({name: SECRETS[name] for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")})
    env.pop("DISCORD_BOT_TOKEN", None)
    proc = await spawn_bot(env=env)
    await asyncio.sleep(START_RETRYING_S)
    proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    _, err = await asyncio.wait_for(proc.communicate(), RUN_LIMIT_S)
    assert proc.returncode == 0, err.decode()
    assert time.monotonic() - stopped < PROMPT_STOP_S  # not after the retries (15 s)


async def test_sigterm_lets_the_answer_in_flight_finish(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(reply("a slow but complete answer", ttft_s=1.0, chunks=5))
    proc = await asking(fake_openai, bot_env(tmp_path, fake_openai), b"take your time\n")
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), RUN_LIMIT_S)
    assert proc.returncode == 0, err.decode()
    assert answers(out.decode()) == ["a slow but complete answer"]
    db = sqlite3.connect(tmp_path / "bot.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        roles = [r[0] for r in db.execute("SELECT role FROM turns ORDER BY id")]
        assert roles == ["user", "assistant"]
    finally:
        db.close()


async def test_console_local_model_end_to_end(tmp_path: Path) -> None:
    """The whole real stack offline: llama.cpp + SmolLM2 + openai SDK + console."""
    skip_unless_local_model_installed()
    env = bot_env(tmp_path)
    env.pop("OPENAI_API_KEY")
    code, out, err = await run_bot(["console", "--local"], env, b"Say hello in one word.\n")
    assert code == 0, err
    # One answer; the small model sometimes writes it in several paragraphs.
    assert out.count("answer: ") == 1, out
    assert out.split("answer: ", 1)[1].strip(), out


async def test_an_unset_variable_the_file_names_is_not_blamed_on_the_usual_one(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("openai:\n  api_key: ${NOPE_VAR}\n")
    code, _, err = await run_bot(["check", "--config", str(config)], bot_env(tmp_path))
    assert code == 2
    assert err.splitlines() == [
        "error: config: openai.api_key: environment variable NOPE_VAR is not set "
        "(set it, or write ${NOPE_VAR:-default} to make it optional)"
    ]


def test_a_platform_that_stays_unavailable_at_start_exits_1_not_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import bot.__main__ as cli

    async def unavailable(*_args: object, **_kwargs: object) -> int:
        raise PlatformUnavailable("slack: auth.test kept failing (internal_error)")

    monkeypatch.setattr(cli, "serve", unavailable)
    monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    for name in ("OPENAI_API_KEY", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
        monkeypatch.setenv(name, SECRETS[name])
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/bot.db")
    assert cli.main(["--config", str(ROOT / "config.yaml")]) == 1
    assert capsys.readouterr().err == "error: slack: auth.test kept failing (internal_error)\n"


def test_the_bot_runs_on_uvloop_where_it_is_installed() -> None:
    import uvloop

    from bot.__main__ import loop_factory

    factory = loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
