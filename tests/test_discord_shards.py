"""Discord shards: real discord.py (``AutoShardedClient``) against the fake Discord,
which sends a server's events only on its shard and DMs on shard 0. One process
running every shard, and two ``python -m bot`` processes splitting them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.discord import DiscordAdapter
from adapters.discord.setup import SHARDING_REQUIRED
from bot.config import DiscordConfig, load_config
from bot.core import Core
from bot.errors import ConfigError, StartupError
from fakes.fake_discord import FakeDiscord, guild, member, text_channel
from fakes.fake_openai import FakeOpenAI, echo_last_user
from tests.postgres_support import postgres_schema
from tests.process_support import START_LIMIT_S, bot_process, discord_env, logged
from tests.support import (
    ALICE,
    DISCORD_FAST,
    DM_CHANNEL,
    GENERAL,
    GUILD,
    ROOT,
    bot_env,
    bot_posts,
    discord_at,
    mention,
    run_bot,
    settle,
)

SHARDS = 2
CONFIG = ROOT / "config.yaml"  # the shipped file
READY_LIMIT_S = 30.0  # discord.py waits 5 s between two shards' IDENTIFYs, as Discord asks
ANSWER_LIMIT_S = 30.0
GUILDS_PER_SHARD = 2
QUESTIONS_PER_CHANNEL = 3


def guild_on(shard: int, index: int) -> str:
    """A server id on ``shard`` of SHARDS: Discord's ``(guild_id >> 22) % shard_count``."""
    base = 710_000_000_000_000_000 >> 22
    high = base + index * SHARDS + (shard - base) % SHARDS
    return str((high << 22) | index)


def add_guilds(fake: FakeDiscord) -> list[str]:
    """GUILDS_PER_SHARD servers on each shard, one channel each; their channel ids."""
    channels = []
    for shard in range(SHARDS):
        for index in range(GUILDS_PER_SHARD):
            gid = guild_on(shard, index)
            cid = str(int(gid) + 1)
            fake.add_guild(
                guild(
                    gid,
                    f"server {shard}-{index}",
                    owner_id=ALICE["id"],
                    channels=[text_channel(cid, "general")],
                    members=[member(ALICE)],
                )
            )
            channels.append(cid)
    return channels


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, core: Core, **cfg: object) -> AsyncIterator[None]:
    adapter = DiscordAdapter(
        DiscordConfig(token=fake.token, **cfg),  # type: ignore[arg-type]
        core,
        guild_ready_timeout=0.05,
        ready_timeout=READY_LIMIT_S,
        limits=DISCORD_FAST,
    )
    await adapter.start()
    try:
        yield
    finally:
        await adapter.stop()


def answers_to(fake: FakeDiscord) -> list[str]:
    """The ids of the messages the bot's posts reply to, one per post."""
    return [
        str(m["message_reference"]["message_id"])
        for m in (fake.messages[mid] for mid in fake.posted)
        if "message_reference" in m
    ]


@pytest.mark.parametrize("shard_count", [SHARDS, 0], ids=["configured", "asked-of-discord"])
async def test_one_process_runs_every_shard_and_answers_servers_on_each(
    monkeypatch: pytest.MonkeyPatch,
    fake_openai: FakeOpenAI,
    memory_core: Core,
    shard_count: int,
) -> None:
    fake_openai.reply_fn = echo_last_user
    async with discord_at(monkeypatch, shard_count=SHARDS) as fake:
        assert fake.shard_of({"guild_id": GUILD}) == 1  # the test world's server
        on_zero = add_guilds(fake)[0]  # a channel in a server on shard 0
        async with running(fake, memory_core, shard_count=shard_count):
            asked = [
                await fake.send_message(
                    channel, ALICE, mention(fake, f"hi {channel}"), mentions=(fake.bot,)
                )
                for channel in (GENERAL, on_zero)
            ]
            asked.append(await fake.send_message(DM_CHANNEL, ALICE, "hi in private"))
            await fake.wait_until(lambda: len(answers_to(fake)) == len(asked), ANSWER_LIMIT_S)
            await settle(memory_core)
        assert sorted(answers_to(fake)) == sorted(q["id"] for q in asked)
        assert sorted(i["shard"] for i in fake.identifies) == [[0, SHARDS], [1, SHARDS]]
        assert [m["content"] for m in bot_posts(fake, DM_CHANNEL)] == ["hi in private"]


async def test_two_processes_split_the_shards_and_answer_each_server_once(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.reply_fn = echo_last_user
    async with FakeDiscord(shard_count=SHARDS) as fake, postgres_schema() as database:
        channels = add_guilds(fake)
        env = bot_env(tmp_path, fake_openai, **discord_env(fake), DATABASE_URL=database)
        logs = [tmp_path / f"shard-{shard}.log" for shard in range(SHARDS)]
        async with contextlib.AsyncExitStack() as stack:
            bots = [
                await stack.enter_async_context(
                    bot_process(
                        dict(env, DISCORD_SHARD_COUNT=str(SHARDS), DISCORD_SHARD_IDS=str(shard)),
                        logs[shard],
                    )
                )
                for shard in range(SHARDS)
            ]
            for bot in bots:
                await bot.alive_until(fake.connected.wait(), START_LIMIT_S)
            asked = [
                (
                    await fake.send_message(
                        channel, ALICE, mention(fake, f"q{n} in {channel}"), mentions=(fake.bot,)
                    )
                )["id"]
                for n in range(QUESTIONS_PER_CHANNEL)
                for channel in channels
            ]
            for bot in bots:
                await bot.alive_until(
                    fake.wait_until(lambda: len(answers_to(fake)) >= len(asked), ANSWER_LIMIT_S),
                    ANSWER_LIMIT_S,
                )
            await asyncio.sleep(0.5)  # room for a second answer, which must not come
            for shard, bot in enumerate(bots):  # answering starts before the start ends
                started = f"server(s), on shards {shard} of {SHARDS}"
                await bot.alive_until(logged(bot, started), START_LIMIT_S)
            for bot in bots:
                assert await bot.stop() == 0, bot.tail()
    assert sorted(answers_to(fake)) == sorted(asked)  # every question once, none twice
    assert sorted(i["shard"] for i in fake.identifies) == [[0, SHARDS], [1, SHARDS]]
    for shard in range(SHARDS):  # each server's questions went to its shard's process only
        questions = [m for m in fake.events_on(shard, "MESSAGE_CREATE") if m["id"] in asked]
        assert len(questions) == len(asked) // SHARDS
        assert {fake.shard_of(m) for m in questions} == {shard}
    for shard, log in enumerate(logs):
        assert f"server(s), on shards {shard} of {SHARDS}" in log.read_text(), log.read_text()


async def test_an_unsharded_bot_told_to_shard_says_which_setting_to_change(
    monkeypatch: pytest.MonkeyPatch, memory_core: Core
) -> None:
    async with discord_at(monkeypatch, shard_count=SHARDS) as fake:
        adapter = DiscordAdapter(
            DiscordConfig(token=fake.token), memory_core, guild_ready_timeout=0.05
        )
        with pytest.raises(StartupError) as raised:
            await adapter.start()
        await adapter.stop()
    assert str(raised.value) == SHARDING_REQUIRED
    assert "discord.shard_count (DISCORD_SHARD_COUNT)" in SHARDING_REQUIRED
    assert [i.get("shard") for i in fake.identifies] == [None]  # closed with 4011


@pytest.mark.parametrize(
    ("env", "key", "problem"),
    [
        (
            {"DISCORD_SHARD_IDS": "0,2", "DISCORD_SHARD_COUNT": "2"},
            "discord.shard_ids[1]",
            "must be below discord.shard_count (2), got 2",
        ),
        (
            {"DISCORD_SHARD_IDS": "1"},
            "discord.shard_ids[0]",
            "must be below discord.shard_count (1), got 1",
        ),
        (
            {"DISCORD_SHARD_IDS": "1,1", "DISCORD_SHARD_COUNT": "4"},
            "discord.shard_ids[1]",
            "shard 1 is listed twice",
        ),
        (
            {"DISCORD_SHARD_IDS": "one", "DISCORD_SHARD_COUNT": "4"},
            "discord.shard_ids[0]",
            "must be a whole number, got 'one'",
        ),
        (
            {"DISCORD_SHARD_IDS": "0", "DISCORD_SHARD_COUNT": "0"},
            "discord.shard_ids",
            "needs discord.shard_count",
        ),
        ({"DISCORD_SHARD_COUNT": "-1"}, "discord.shard_count", "must be a whole number"),
    ],
)
def test_bad_shard_settings_name_their_key(env: dict[str, str], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(CONFIG, {"OPENAI_API_KEY": "k", **env})
    assert raised.value.path == key and raised.value.problem.startswith(problem)


def test_shards_come_from_the_environment() -> None:
    cfg = load_config(
        CONFIG, {"OPENAI_API_KEY": "k", "DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "2, 3"}
    )
    assert (cfg.discord.shard_count, cfg.discord.shard_ids) == (4, ("2", "3"))


async def test_check_refuses_a_shard_outside_the_count_with_exit_2(tmp_path: Path) -> None:
    env = bot_env(tmp_path, DISCORD_SHARD_COUNT="2", DISCORD_SHARD_IDS="5")
    code, out, err = await run_bot(["check"], env)
    assert code == 2
    assert err.splitlines() == [
        "error: config: discord.shard_ids[0]: must be below discord.shard_count (2), got 5"
    ]
    assert out == ""
