"""Running `python -m bot` as a real subprocess, for the process-level tests."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes.fake_discord import FakeDiscord
from fakes.fake_slack import FakeSlack
from tests.support import spawn_bot

START_LIMIT_S = 30.0  # from exec to connected; normally about a second
ANSWER_LIMIT_S = 20.0
STOP_LIMIT_S = 15.0  # SIGTERM to exit (the core's grace period is 5 s)
LOG_POLL_S = 0.05  # how often a log another process writes is read again


@dataclass
class Bot:
    """A running `python -m bot`; its log goes to a file (a pipe could fill and block it)."""

    proc: asyncio.subprocess.Process
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def alive_until(self, waiting: Awaitable[Any], within: float) -> None:
        """Wait for ``waiting``; fail at once, with the log, if the process exits."""
        task = asyncio.ensure_future(waiting)
        exited = asyncio.ensure_future(self.proc.wait())
        done, _ = await asyncio.wait(
            {task, exited}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
        exited.cancel()
        if task not in done:
            task.cancel()
            state = f"exited with {self.proc.returncode}" if exited in done else "timed out"
            raise AssertionError(f"bot {state}; log:\n{self.tail()}")
        task.result()

    async def stop(self) -> int:
        """SIGTERM, then the exit status (answers in flight get the core's grace period)."""
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), STOP_LIMIT_S)

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), STOP_LIMIT_S)
        assert self.proc.returncode == -signal.SIGKILL


@contextlib.asynccontextmanager
async def bot_process(env: dict[str, str], log: Path) -> AsyncIterator[Bot]:
    with log.open("ab") as out:
        proc = await spawn_bot(env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        yield Bot(proc, log)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def discord_env(fake: FakeDiscord) -> dict[str, str]:
    return {"DISCORD_BOT_TOKEN": fake.token, "DISCORD_API_URL": fake.api_base}


def slack_env(fake: FakeSlack) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": fake.bot_token,
        "SLACK_APP_TOKEN": fake.app_token,
        "SLACK_API_URL": fake.api_url,
    }


def rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return list(db.execute(sql))


async def logged(bot: Bot, line: str) -> None:
    """Wait until the bot's log has ``line`` (another process writes it: poll)."""
    while line not in bot.log.read_text(errors="replace"):  # noqa: ASYNC110
        await asyncio.sleep(LOG_POLL_S)
