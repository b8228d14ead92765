"""Discord gateway shards: how many there are in all, and which this process runs.

Discord sends a server's events on shard ``(guild_id >> 22) % shard_count`` and
DMs on shard 0; it requires sharding from 2,500 servers. ``discord.shard_count``
is the number across every process of the bot (0: as many as Discord recommends,
asked at start); ``discord.shard_ids`` the ones this process connects, so N
processes with disjoint ids split the servers between them. Checked on load:
a bad value names its key and the bot exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

COUNT_KEY = "discord.shard_count"
IDS_KEY = "discord.shard_ids"
ASK_DISCORD = 0  # shard_count 0: take Discord's recommendation (GET /gateway/bot)
MAX_SHARDS = 65_536  # far above any bot's; catches a typo's extra digits


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """The gateway connections of this process."""

    count: int | None  # None: ask Discord
    ids: tuple[int, ...]  # empty: every shard


def shard_plan(count: int, ids: tuple[str, ...]) -> ShardPlan | None:
    """The plan for ``discord.shard_count`` / ``discord.shard_ids``; None for one
    unsharded connection (the default). Raises ConfigError naming the bad key."""
    if count == 1 and not ids:
        return None
    if count == ASK_DISCORD and ids:
        raise ConfigError(
            IDS_KEY,
            f"needs {COUNT_KEY} set to the number of shards across all processes "
            "(0, ask Discord, only works when one process runs every shard)",
        )
    numbers: list[int] = []
    for i, text in enumerate(ids):
        key = f"{IDS_KEY}[{i}]"
        if not text.isdigit():
            raise ConfigError(key, f"must be a whole number, got {text!r}")
        number = int(text)
        if number >= count:
            raise ConfigError(key, f"must be below {COUNT_KEY} ({count}), got {number}")
        if number in numbers:
            raise ConfigError(key, f"shard {number} is listed twice")
        numbers.append(number)
    return ShardPlan(None if count == ASK_DISCORD else count, tuple(numbers))


def describe(plan: ShardPlan | None, running: int | None) -> str:
    """For the start-up log: ``shards 0, 1 of 2``; empty when not sharded."""
    if plan is None:
        return ""
    total = plan.count if plan.count is not None else running
    ids = plan.ids or tuple(range(total or 0))
    return f"shards {', '.join(map(str, ids))} of {total}"
