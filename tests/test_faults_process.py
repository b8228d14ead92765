"""Fault matrix, process side: `python -m bot` as a real subprocess.

The shipped config.yaml is used unchanged, configured only through environment
variables (as tests/test_cli.py does), against the fake OpenAI, the fake Discord
and the fake Slack, with DATABASE_URL pointing at a temporary SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fakes.fake_discord import FakeDiscord
from fakes.fake_openai import DEFAULT_TEXT, Behaviour, FakeOpenAI
from fakes.fake_slack import FakeSlack
from tests.process_support import (
    ANSWER_LIMIT_S,
    START_LIMIT_S,
    bot_process,
    discord_env,
    rows,
    slack_env,
)
from tests.support import ALICE, GENERAL, bot_env, build_world, marker_reply, mention
from tests.support import SLACK_CHANNEL as CHANNEL
from tests.support import discord_texts as texts

KILL_EVENTS = 100
KILL_DELIVERED = 60  # events the first process receives before it is killed
KILL_ANSWERED = 15  # ...and answers it has recorded by then
HANG_S = 60.0  # a model call that outlives the process

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


# -- running the bot ----------------------------------------------------------------------


def integrity(db_path: Path) -> str:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


# -- one process, two platforms -----------------------------------------------------------


async def test_one_process_serves_discord_and_slack_at_once(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    async with FakeDiscord() as discord_fake, FakeSlack() as slack_fake:
        build_world(discord_fake)
        env = bot_env(
            tmp_path,
            fake_openai,
            **discord_env(discord_fake),
            **slack_env(slack_fake),
        )
        async with bot_process(env, tmp_path / "bot.log") as bot:
            await bot.alive_until(discord_fake.connected.wait(), START_LIMIT_S)
            await bot.alive_until(
                slack_fake.wait_until(lambda: slack_fake.connections >= 1, START_LIMIT_S),
                START_LIMIT_S,
            )
            await discord_fake.send_message(
                GENERAL,
                ALICE,
                mention(discord_fake, "hi from Discord"),
                mentions=(discord_fake.bot,),
            )
            question, _ = slack_fake.mention("hi from Slack")
            await slack_fake.push(question)
            root = question["event"]["ts"]

            def slack_done() -> bool:
                posted = slack_fake.posted(CHANNEL, root)
                return [p.text.strip() for p in posted if not p.streaming] == [DEFAULT_TEXT]

            await bot.alive_until(
                discord_fake.wait_until(
                    lambda: texts(discord_fake, GENERAL) == [DEFAULT_TEXT], ANSWER_LIMIT_S
                ),
                ANSWER_LIMIT_S,
            )
            await bot.alive_until(slack_fake.wait_until(slack_done, ANSWER_LIMIT_S), ANSWER_LIMIT_S)
            assert await bot.stop() == 0, bot.tail()
    db = tmp_path / "bot.db"
    assert integrity(db) == "ok"
    stored = rows(db, "SELECT conversation, role FROM turns ORDER BY id")
    assert Counter(conv.split(":")[0] for conv, _ in stored) == {"discord": 2, "slack": 2}
    assert sorted(role for _, role in stored) == ["assistant"] * 2 + ["user"] * 2


# -- SIGKILL mid-burst, restart, Slack redelivers every event ------------------------------


class LostAnswers(AssertionError):
    """Events accepted before the kill that were never answered, even when redelivered."""


@dataclass(frozen=True, slots=True)
class Event:
    marker: str  # "c7-m0": the model echoes it, so an answer names its question
    channel: str
    body: dict[str, Any]

    @property
    def ts(self) -> str:
        return str(self.body["event"]["ts"])


def burst(fake: FakeSlack) -> list[Event]:
    """One mention in each of KILL_EVENTS channels, each from its own person.

    One conversation per channel: with the shipped limits Slack writes are paced per
    channel (a burst of three, then one every two seconds), and the per-person
    message limit would throttle one author sending them all.
    """
    events = []
    for i in range(KILL_EVENTS):
        channel, marker = f"C{i:04d}", f"c{i}-m0"
        body, _ = fake.mention(marker, channel=channel, user=f"U{i:04d}")
        events.append(Event(marker, channel, body))
    return events


async def answers_recorded(db_path: Path, count: int) -> None:
    """Wait until ``count`` answers are stored (polling the file the bot writes)."""
    sql = "SELECT COUNT(*) FROM turns WHERE role = 'assistant' AND delivered = 1"

    def recorded() -> bool:
        return db_path.exists() and rows(db_path, sql)[0][0] >= count

    # Another process writes the file: nothing here can signal us, so poll it.
    while not await asyncio.to_thread(recorded):  # noqa: ASYNC110
        await asyncio.sleep(0.02)


def answer_counts(fake: FakeSlack, events: list[Event]) -> Counter[str]:
    """How often each question got a complete answer (the bot's posts naming it)."""
    return Counter(
        text
        for e in events
        for text in (p.text.strip() for p in fake.posted(e.channel))
        if text == e.marker
    )


async def test_sigkill_mid_burst_then_redelivery_answers_every_event_once(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    fake_openai.reply_fn = marker_reply
    # Run 1's model answers KILL_ANSWERED questions, then hangs: the kill then always
    # lands with answers done, answers in flight, and events never delivered.
    fake_openai.script(*[Behaviour()] * KILL_ANSWERED)
    fake_openai.default = Behaviour(ttft_s=HANG_S)
    async with FakeSlack() as fake:
        env = bot_env(tmp_path, fake_openai, **slack_env(fake))
        events = burst(fake)

        async with bot_process(env, tmp_path / "run1.log") as bot:
            await bot.alive_until(
                fake.wait_until(lambda: fake.connections >= 1, START_LIMIT_S), START_LIMIT_S
            )
            envelopes = {await fake.push(e.body): e.ts for e in events[:KILL_DELIVERED]}
            await bot.alive_until(
                fake_openai.wait_for(lambda f: f.request_count > KILL_ANSWERED), ANSWER_LIMIT_S
            )
            # Kill once those answers are recorded as delivered. An answer cut off
            # between being stored and its last write is shown again on redelivery
            # (tests/test_core.py); one whose last write landed just before the kill
            # but was not yet marked is the one case that can show twice.
            await bot.alive_until(answers_recorded(db, KILL_ANSWERED), ANSWER_LIMIT_S)
            await bot.kill()
        acked = {envelopes[a] for a in fake.acks if a in envelopes}
        assert integrity(db) == "ok"
        accepted = {mid for (mid,) in rows(db, "SELECT message_id FROM turns WHERE role='user'")}
        first_run = answer_counts(fake, events)
        assert set(first_run) <= {e.marker for e in events if e.ts in accepted}

        # Run 2 on the same file; Slack redelivers every event of the burst.
        fake_openai.default = Behaviour()
        async with bot_process(env, tmp_path / "run2.log") as bot:
            await bot.alive_until(
                fake.wait_until(lambda: fake.connections >= 2, START_LIMIT_S), START_LIMIT_S
            )
            for event in events:
                await fake.push(event.body, retry_attempt=1, retry_reason="timeout")
            fresh = {e.marker for e in events if e.ts not in accepted}
            assert len(fresh) >= len(events) - KILL_DELIVERED  # run 1 never saw these
            await bot.alive_until(
                fake.wait_until(lambda: fresh <= set(answer_counts(fake, events)), ANSWER_LIMIT_S),
                ANSWER_LIMIT_S,
            )
            assert await bot.stop() == 0, bot.tail()  # answers in flight finish first

    assert integrity(db) == "ok"
    counts = answer_counts(fake, events)
    assert max(counts.values()) == 1, "an event was answered twice"
    users = rows(db, "SELECT message_id FROM turns WHERE role = 'user'")
    assert len(users) == len(set(users)) == len(events)  # every event stored once
    doubled = "SELECT reply_to FROM turns WHERE role = 'assistant' GROUP BY 1 HAVING COUNT(*) > 1"
    assert rows(db, doubled) == []
    lost = [e.marker for e in events if counts[e.marker] == 0]
    # Real Slack redelivers only events it saw no ack for: these would be lost as well.
    acked_not_stored = [e.marker for e in events if e.ts in acked - accepted]
    if lost or acked_not_stored:
        raise LostAnswers(
            f"run 1 got {KILL_DELIVERED} events, acked {len(acked)}, stored {len(accepted)}, "
            f"answered {sum(first_run.values())} before SIGKILL. Never answered although "
            f"redelivered: {len(lost)} {lost[:5]}. Acked but not stored (real Slack would not "
            f"redeliver them): {len(acked_not_stored)} {acked_not_stored[:5]}"
        )
