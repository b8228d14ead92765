"""Restart recovery with `python -m bot` as real subprocesses (bot/recovery.py).

Run 1 is SIGKILLed while the fake model is in the middle of its answers. Neither
fake platform replays anything to the next session, as neither real one does:
the next process must find the cut-off questions in the database and answer each
once, where it was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.instances import STALE_AFTER_S
from fakes.fake_discord import FakeDiscord, JsonDict
from fakes.fake_openai import Behaviour, FakeOpenAI
from fakes.fake_slack import FakeSlack
from tests.process_support import Bot, bot_process, discord_env, logged, rows, slack_env
from tests.support import (
    ALICE,
    GENERAL,
    OLD_THREAD,
    bot_env,
    bot_posts,
    build_world,
    marker_reply,
    mention,
)
from tests.support import SLACK_CHANNEL as CHANNEL

START_LIMIT_S = 30.0
# Recovery may first wait for the killed instance's heartbeat to go stale.
ANSWER_LIMIT_S = STALE_AFTER_S + 30.0
HANG_S = 120.0  # the model's pause after its first piece in run 1: outlives the process
MINUTES_20 = 20 * 60.0
DONE_LINE = "recovery: done:"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def full_answer(body: dict[str, Any]) -> str:
    """What the model answers to the question marked "c1-m0": "Answer to c1-m0."."""
    return f"Answer to {marker_reply(body)}."


def stalls_mid_stream() -> Behaviour:
    """The first piece of the answer at once, then a pause nobody waits out."""
    return Behaviour(chunks=4, chunk_interval_s=HANG_S)


async def started(bot: Bot, ready: Awaitable[Any]) -> None:
    await bot.alive_until(ready, START_LIMIT_S)


def age_everything(db: Path, seconds: float) -> None:
    """Move every stored time back, as if ``seconds`` had passed since run 1."""
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute("UPDATE seen SET at = at - ?", (seconds,))
        con.execute("UPDATE turns SET created_at = created_at - ?", (seconds,))
        con.execute("UPDATE instances SET heartbeat = heartbeat - ?", (seconds,))


def complete(texts: list[str], answer: str) -> int:
    return sum(1 for t in texts if t.strip() == answer)


# -- Discord and Slack: a question each, cut off by SIGKILL --------------------------------


class World:
    """Both fake platforms and the questions asked in run 1."""

    def __init__(self, discord_fake: FakeDiscord, slack_fake: FakeSlack) -> None:
        self.discord = discord_fake
        self.slack = slack_fake
        self.slack_parent = slack_fake.next_ts()  # a thread someone started earlier
        self.discord_question: JsonDict = {}

    async def ask(self) -> None:
        self.discord_question = await self.discord.send_message(
            OLD_THREAD,
            ALICE,
            mention(self.discord, "c1-m0 asked in a thread"),
            mentions=(self.discord.bot,),
        )
        body, _ = self.slack.mention("c2-m0 asked in a thread", thread_ts=self.slack_parent)
        await self.slack.push(body)

    def discord_answers(self) -> list[JsonDict]:
        return [
            m for m in bot_posts(self.discord, OLD_THREAD) if m["content"] == "Answer to c1-m0."
        ]

    def slack_texts(self) -> list[str]:
        return [p.text for p in self.slack.posted(CHANNEL, self.slack_parent) if not p.streaming]

    def both_started_answering(self) -> bool:
        return bool(bot_posts(self.discord, OLD_THREAD)) and bool(
            self.slack.posted(CHANNEL, self.slack_parent)
        )


async def run_and_kill(env: dict[str, str], log: Path, world: World) -> None:
    async with bot_process(env, log) as bot:
        await started(bot, world.discord.connected.wait())
        await started(bot, world.slack.wait_until(lambda: world.slack.connections >= 1))
        await world.ask()
        await bot.alive_until(
            poll(world.both_started_answering), START_LIMIT_S
        )  # the first pieces are shown; the rest never comes
        await bot.kill()


async def poll(predicate: Callable[[], bool]) -> None:
    """Wait for a condition on the fakes, which two sockets may change."""
    while not predicate():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def test_sigkill_mid_answer_is_answered_after_restart_in_place_once(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.reply_fn = full_answer
    fake_openai.default = stalls_mid_stream()
    async with FakeDiscord() as discord_fake, FakeSlack() as slack_fake:
        build_world(discord_fake)
        world = World(discord_fake, slack_fake)
        env = bot_env(
            tmp_path,
            fake_openai,
            **discord_env(discord_fake),
            **slack_env(slack_fake),
        )
        await run_and_kill(env, tmp_path / "run1.log", world)
        assert world.discord_answers() == [] and world.slack_texts() == []
        pushed, asked = len(slack_fake.acks), fake_openai.request_count

        fake_openai.default = Behaviour()  # the model answers in full from now on
        async with bot_process(env, tmp_path / "run2.log") as bot:
            await bot.alive_until(
                poll(lambda: bool(world.discord_answers()) and bool(world.slack_texts())),
                START_LIMIT_S + ANSWER_LIMIT_S,
            )
            await bot.alive_until(logged(bot, DONE_LINE), ANSWER_LIMIT_S)
            assert await bot.stop() == 0, bot.tail()

    assert len(slack_fake.acks) == pushed  # nothing was redelivered
    assert fake_openai.request_count == asked + 2  # each question asked once more
    # Discord: in the thread, replying to the question, once; nothing in the channel.
    (discord_answer,) = world.discord_answers()
    assert str(discord_answer["message_reference"]["message_id"]) == world.discord_question["id"]
    assert bot_posts(discord_fake, GENERAL) == []
    # Slack: in the question's thread, once.
    assert complete(world.slack_texts(), "Answer to c2-m0.") == 1
    assert complete([p.text for p in slack_fake.posted()], "Answer to c2-m0.") == 1
    db = tmp_path / "bot.db"
    undelivered = "SELECT COUNT(*) FROM turns WHERE role = 'assistant' AND delivered = 0"
    assert rows(db, undelivered) == [(0,)]
    assert rows(db, "SELECT COUNT(*) FROM turns WHERE role = 'assistant'") == [(2,)]
    run2 = bot.log.read_text()
    assert "is gone; taking over its work" in run2  # its pid told, before its heartbeat
    assert "done: 2 cut-off messages queued to be answered, 0 skipped, 0 too old" in run2


# -- too old: logged, not answered, and not listed again ----------------------------------


async def test_a_question_older_than_the_limit_is_logged_and_left(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.reply_fn = full_answer
    fake_openai.default = stalls_mid_stream()
    async with FakeDiscord() as discord_fake, FakeSlack() as slack_fake:
        build_world(discord_fake)
        world = World(discord_fake, slack_fake)
        env = bot_env(
            tmp_path,
            fake_openai,
            **discord_env(discord_fake),
            **slack_env(slack_fake),
        )
        await run_and_kill(env, tmp_path / "run1.log", world)
        db = tmp_path / "bot.db"
        age_everything(db, MINUTES_20)  # the default limit is 15 minutes
        asked = fake_openai.request_count
        fake_openai.default = Behaviour()

        async with bot_process(env, tmp_path / "run2.log") as bot:
            await bot.alive_until(logged(bot, DONE_LINE), START_LIMIT_S)
            assert await bot.stop() == 0, bot.tail()
        run2 = bot.log.read_text()
        async with bot_process(env, tmp_path / "run3.log") as bot:
            await bot.alive_until(logged(bot, DONE_LINE), START_LIMIT_S)
            assert await bot.stop() == 0, bot.tail()
        run3 = bot.log.read_text()

    assert fake_openai.request_count == asked  # nothing was answered
    assert world.discord_answers() == [] and world.slack_texts() == []
    assert "2 unanswered messages are older than 15 minutes" in run2
    assert world.discord_question["id"] in run2
    assert "done: 0 cut-off messages queued to be answered, 0 skipped, 2 too old" in run2
    assert "older than" not in run3  # marked done: left alone for good
    assert "done: 0 cut-off messages queued to be answered, 0 skipped, 0 too old" in run3
    assert rows(db, "SELECT COUNT(*) FROM seen WHERE done = 1") == [(2,)]


# -- two instances at once; a redelivery during recovery (Slack) ---------------------------


async def slack_run_and_kill(env: dict[str, str], log: Path, fake: FakeSlack) -> dict[str, Any]:
    """Run 1: one mention, SIGKILL once the answer has started streaming."""
    async with bot_process(env, log) as bot:
        await started(bot, fake.wait_until(lambda: fake.connections >= 1))
        body, _ = fake.mention("c3-m0 please")
        await fake.push(body)
        root = body["event"]["ts"]
        await bot.alive_until(poll(lambda: bool(fake.posted(CHANNEL, root))), START_LIMIT_S)
        await bot.kill()
    return body


def slack_answers(fake: FakeSlack) -> int:
    return complete([p.text for p in fake.posted()], "Answer to c3-m0.")


async def test_two_instances_starting_at_once_answer_once(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.reply_fn = full_answer
    fake_openai.default = stalls_mid_stream()
    async with FakeSlack() as fake:
        env = bot_env(tmp_path, fake_openai, **slack_env(fake))
        await slack_run_and_kill(env, tmp_path / "run1.log", fake)
        asked = fake_openai.request_count
        fake_openai.default = Behaviour()
        async with (
            bot_process(env, tmp_path / "a.log") as a,
            bot_process(env, tmp_path / "b.log") as b,
        ):
            await a.alive_until(logged(a, DONE_LINE), START_LIMIT_S + ANSWER_LIMIT_S)
            await b.alive_until(logged(b, DONE_LINE), START_LIMIT_S + ANSWER_LIMIT_S)
            await a.alive_until(poll(lambda: slack_answers(fake) >= 1), ANSWER_LIMIT_S)
            assert await a.stop() == 0, a.tail()
            assert await b.stop() == 0, b.tail()
        logs = [a.log.read_text(), b.log.read_text()]

    assert slack_answers(fake) == 1
    assert fake_openai.request_count == asked + 1
    queued = sorted("1 cut-off messages queued" in log for log in logs)
    assert queued == [False, True], logs  # one took it over, the other left it


async def test_a_redelivery_while_recovery_answers_gets_no_second_answer(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.reply_fn = full_answer
    fake_openai.default = stalls_mid_stream()
    async with FakeSlack() as fake:
        env = bot_env(tmp_path, fake_openai, **slack_env(fake))
        body = await slack_run_and_kill(env, tmp_path / "run1.log", fake)
        asked = fake_openai.request_count
        # Recovery's model call takes a while: the redelivery lands in the middle of it.
        fake_openai.default = Behaviour(ttft_s=5.0)
        async with bot_process(env, tmp_path / "run2.log") as bot:
            await started(bot, fake.wait_until(lambda: fake.connections >= 2))
            await bot.alive_until(
                fake_openai.wait_for(lambda f: f.request_count > asked), ANSWER_LIMIT_S
            )
            envelope = await fake.push(body, retry_attempt=1, retry_reason="timeout")
            await bot.alive_until(fake.wait_ack(envelope), ANSWER_LIMIT_S)
            assert slack_answers(fake) == 0  # the redelivery came while recovery answered
            await bot.alive_until(poll(lambda: slack_answers(fake) >= 1), ANSWER_LIMIT_S)
            assert await bot.stop() == 0, bot.tail()

    assert slack_answers(fake) == 1
    assert fake_openai.request_count == asked + 1
