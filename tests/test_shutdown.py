"""Shutdown loses nothing: intake stops first, answers in flight get the grace period,
an answer the grace cuts ends with a visible note and stays unanswered in the store.

Through a real `python -m bot` (SIGTERM) against the fake Slack, and in process
through ``bot.shutdown.shut_down`` with the real discord.py against the fake Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.shutdown import shut_down
from bot.texts import Texts
from fakes.fake_openai import FakeOpenAI, reply
from fakes.fake_slack import FakeSlack
from storage.sqlite import SqliteStore
from tests.process_support import (
    ANSWER_LIMIT_S,
    START_LIMIT_S,
    STOP_LIMIT_S,
    bot_process,
    slack_env,
)
from tests.support import (
    ALICE,
    GENERAL,
    CoreFactory,
    bot_env,
    bot_posts,
    discord_at,
    mention,
    writes,
)
from tests.support import SLACK_CHANNEL as CHANNEL
from tests.support import running_discord as running

NOTE = Texts("en").get("cut_by_restart")
# An answer the model writes for far longer than the shutdown grace period.
LONG = " ".join(f"word{i}" for i in range(400))
SLOW = {"chunks": 40, "chunk_interval_s": 0.5}
LATE_PUSH_S = 60.0  # the late event waits this long for the next process's socket

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGTERM")


def rows(db_path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return list(db.execute(sql, params))


def not_done(db_path: Path, message_id: str) -> bool:
    """The message was taken, is not marked done and has no answer stored."""
    seen = rows(db_path, "SELECT done FROM seen WHERE message_id = ?", message_id)
    answers = rows(
        db_path,
        "SELECT a.id FROM turns a JOIN turns u ON a.reply_to = u.id WHERE u.message_id = ?",
        message_id,
    )
    return seen == [(0,)] and answers == []


async def test_sigterm_closes_the_slack_socket_first_and_the_cut_answer_ends_with_a_note(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    # The next process answers two questions, in whichever order: the cut one (restart
    # recovery) and the one sent while the bot stopped (Slack's redelivery).
    fake_openai.script(
        reply(LONG, **SLOW),
        reply("Answered by the next process."),
        reply("Answered by the next process."),
    )
    async with FakeSlack() as fake:
        env = bot_env(tmp_path, fake_openai, **slack_env(fake))
        first, _ = fake.mention("tell me a long story")
        late, _ = fake.mention("a question sent while the bot stops", user="U0BOB")
        root = first["event"]["ts"]

        def streaming() -> bool:
            return any(p.streaming and p.text.strip() for p in fake.posted(CHANNEL, root))

        async with bot_process(env, tmp_path / "run1.log") as bot:
            await bot.alive_until(
                fake.wait_until(lambda: fake.open_sockets == 1, START_LIMIT_S), START_LIMIT_S
            )
            await fake.wait_ack(await fake.push(first))
            await bot.alive_until(fake.wait_until(streaming, ANSWER_LIMIT_S), ANSWER_LIMIT_S)
            bot.proc.send_signal(signal.SIGTERM)
            # Intake stops first: the socket closes while the answer is still streaming,
            # so nothing sent from now on can be acked by a process about to exit.
            await fake.wait_until(lambda: fake.open_sockets == 0, STOP_LIMIT_S)
            assert streaming()
            [answer] = fake.posted(CHANNEL, root)
            shown_when_intake_closed = answer.text
            pushing = asyncio.ensure_future(fake.push(late, within=LATE_PUSH_S))
            assert await asyncio.wait_for(bot.proc.wait(), STOP_LIMIT_S) == 0, bot.tail()
            assert not pushing.done()  # Slack holds the event for the next connection

        [cut] = fake.posted(CHANNEL, root)
        assert not cut.streaming  # chat.stopStream, never left streaming
        assert cut.text.startswith("word0 word1")
        assert cut.text.endswith("\n\n" + NOTE)
        assert LONG not in cut.text
        # The answer went on streaming in the grace period, after the socket closed.
        assert cut.text.startswith(shown_when_intake_closed)
        assert len(cut.text.removesuffix("\n\n" + NOTE)) > len(shown_when_intake_closed)
        assert [c.args["ts"] for c in fake.calls_to("chat.stopStream")] == [cut.ts]
        assert not_done(db, root)  # left for the next start to answer

        async with bot_process(env, tmp_path / "run2.log") as bot:
            envelope = await asyncio.wait_for(pushing, LATE_PUSH_S)
            await bot.alive_until(fake.wait_ack(envelope, ANSWER_LIMIT_S), ANSWER_LIMIT_S)
            late_ts = late["event"]["ts"]

            def answered() -> bool:
                posted = fake.posted(CHANNEL, late_ts)
                return [p.text for p in posted if not p.streaming] == [
                    "Answered by the next process."
                ]

            def answered_in_full_again() -> bool:
                finished = [p.text for p in fake.posted(CHANNEL, root) if not p.streaming]
                return finished[1:] == ["Answered by the next process."]

            await bot.alive_until(fake.wait_until(answered, ANSWER_LIMIT_S), ANSWER_LIMIT_S)
            # The cut question is answered in full after the restart, below its cut answer.
            await bot.alive_until(
                fake.wait_until(answered_in_full_again, ANSWER_LIMIT_S), ANSWER_LIMIT_S
            )
            assert await bot.stop() == 0, bot.tail()
        assert not not_done(db, root)
    stored = {mid for (mid,) in rows(db, "SELECT message_id FROM seen")}
    assert {root, late["event"]["ts"]} <= stored  # every acked event was stored


async def test_discord_answer_cut_by_shutdown_ends_with_the_note_in_its_message(
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy_env: None,
    tmp_path: Path,
) -> None:
    db = tmp_path / "bot.db"
    store = SqliteStore(str(db))
    await store.open()
    core = await core_factory(store, language="ko")
    fake_openai.script(reply(LONG, chunks=40, chunk_interval_s=0.25))
    async with discord_at(monkeypatch) as fake, running(fake, core) as adapter:
        sent = await fake.send_message(
            GENERAL, ALICE, mention(fake, "long one"), mentions=(fake.bot,)
        )
        await fake.wait_until(lambda: any(p["content"] for p in bot_posts(fake, GENERAL)))

        async def model_client_closed() -> None:
            pass

        await shut_down(core, [adapter], model_client_closed, store, grace_s=0.2)
        [post] = bot_posts(fake, GENERAL)
        note = Texts("ko").get("cut_by_restart")
        assert post["content"].startswith("word0")
        assert post["content"].endswith("\n\n" + note)
        last_edit = [c for c in writes(fake, GENERAL) if c.method == "PATCH"][-1]
        assert last_edit.json["content"].endswith(note)
    assert not_done(db, str(sent["id"]))
