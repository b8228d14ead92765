"""Restart recovery's storage cost: ``python -m bench.bench_recovery [--messages N]``.

Prints, for an SQLite file holding N answered messages spread over the last week
(a busy bot; a share of them in the last 15 minutes) plus a few cut-off ones:

* ``store_message_us``: one user turn stored (what every message pays; schema v4
  adds the reply target, the owner and one index entry to it);
* ``unanswered_ms`` / ``abandon_ms``: the two queries recovery runs once at start,
  on the store's writer (the event loop goes on meanwhile).

Not in ``python -m bench``: it measures start-up work, not serving.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bot.recovery import LOOKBACK_S, MAX_LOGGED, MAX_RECOVERED
from bot.store import Origin
from bot.types import Turn
from storage import SqliteStore

DEFAULT_MESSAGES = 50_000
CONVERSATIONS = 200
RECENT_SHARE = 0.05  # of the messages, stored within the last 15 minutes
CUT_OFF = 10  # recent ones left unanswered, and as many old ones
MAX_AGE_S = 15 * 60.0
TARGET = '{"c":700000000000000010,"r":1579302845994237960,"g":700000000000000001}'


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cut_off(messages: int) -> set[int]:
    """Which messages a crash left unanswered: CUT_OFF recent ones, CUT_OFF old ones."""
    recent_from = messages - int(messages * RECENT_SHARE)
    old = range(0, recent_from, max(1, recent_from // CUT_OFF))
    recent = range(recent_from, messages, max(1, (messages - recent_from) // CUT_OFF))
    return set(old) | set(recent)


async def fill(store: SqliteStore, clock: Clock, messages: int, now: float) -> float:
    """Store ``messages`` questions, answering all but the cut-off ones; the time
    one user turn took to store, in µs."""
    recent_from = messages - int(messages * RECENT_SHARE)
    unanswered = cut_off(messages)
    spent = 0.0
    for i in range(messages):
        age = MAX_AGE_S * 0.5 if i >= recent_from else LOOKBACK_S * 0.9 * (1 - i / messages)
        clock.now = now - age
        conv = f"discord:g1:c{i % CONVERSATIONS}::"
        turn = Turn("user", f"question {i}", 3, "u1", "Ann", f"m{i}", clock.now)
        started = time.perf_counter()
        turn_id = await store.add_user_turn(conv, turn, Origin(TARGET))
        spent += time.perf_counter() - started
        assert turn_id is not None
        if i not in unanswered:
            answer = Turn("assistant", f"answer {i}", 3, reply_to=turn_id, delivered=False)
            answer_id = await store.add_assistant_turn(conv, answer)
            assert answer_id is not None
            await store.mark_delivered(conv, answer_id)
    return spent / messages * 1e6


async def run(messages: int) -> dict[str, float]:
    now = time.time()
    clock = Clock(now)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "bench.db"), clock=clock)
        await store.open()
        try:
            store_us = await fill(store, clock, messages, now)
        finally:
            await store.close()
        clock.now = now
        restarted = SqliteStore(str(Path(tmp) / "bench.db"), clock=clock)
        await restarted.open()
        try:
            since = now - MAX_AGE_S
            started = time.perf_counter()
            old = await restarted.abandon_unanswered(since - LOOKBACK_S, since, MAX_LOGGED)
            abandon_ms = (time.perf_counter() - started) * 1e3
            started = time.perf_counter()
            young = await restarted.unanswered(since, MAX_RECOVERED)
            unanswered_ms = (time.perf_counter() - started) * 1e3
        finally:
            await restarted.close()
    return {
        "messages": messages,
        "store_message_us": round(store_us, 1),
        "abandon_ms": round(abandon_ms, 2),
        "abandoned": len(old),
        "unanswered_ms": round(unanswered_ms, 2),
        "unanswered": len(young),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_recovery")
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    args = parser.parse_args()
    for key, value in asyncio.run(run(args.messages)).items():
        print(f"{key:>18}  {value}")


if __name__ == "__main__":
    main()
