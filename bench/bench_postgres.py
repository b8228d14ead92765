"""What one message costs each store: ``python -m bench.bench_postgres [--messages N]``.

For each backend (memory, SQLite, PostgreSQL at ``--url``, default the loopback
test server), stores N user turns spread over 20 conversations and loads each
one's context as an answer does (``add_user_turn`` then ``load_context`` with 40
turns), and prints the median and 95th percentile of that pair in µs. PostgreSQL
runs in a schema of its own, dropped afterwards.

Not in ``python -m bench``: it needs a PostgreSQL server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from bot.store import Origin, Store
from bot.types import Turn
from storage import MemoryStore, SqliteStore
from storage.postgres import PostgresStore

DEFAULT_MESSAGES = 2000
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
CONVERSATIONS = 20
HISTORY = 40  # turns an answer loads
P95 = 0.95


@contextlib.asynccontextmanager
async def scratch_schema(url: str) -> AsyncIterator[str]:
    """A new schema on ``url``'s server; the URL that uses it; dropped afterwards."""
    schema = f"bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        glue = "&" if "?" in url else "?"
        try:
            yield f"{url}{glue}search_path={schema}"
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await admin.close()


async def message_costs(store: Store, messages: int) -> list[float]:
    """µs for each message's add_user_turn + load_context."""
    costs = []
    for i in range(messages):
        conv = f"discord:g1:c{i % CONVERSATIONS}::"
        turn = Turn("user", f"question {i}", 3, "u1", "Ann", f"m{i}", time.time())
        started = time.perf_counter()
        turn_id = await store.add_user_turn(conv, turn, Origin("t"))
        assert turn_id is not None
        await store.load_context(conv, turn_id, HISTORY)
        costs.append((time.perf_counter() - started) * 1e6)
    return costs


async def measured(store: Store, messages: int) -> tuple[float, float]:
    await store.open()
    try:
        costs = sorted(await message_costs(store, messages))
    finally:
        await store.close()
    return statistics.median(costs), costs[int(len(costs) * P95) - 1]


async def run(messages: int, url: str) -> dict[str, tuple[float, float]]:
    results = {"memory": await measured(MemoryStore(), messages)}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SqliteStore(str(Path(tmp) / "bench.db"))
        results["sqlite"] = await measured(sqlite, messages)
    async with scratch_schema(url) as schema_url:
        results["postgres"] = await measured(PostgresStore(schema_url), messages)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_postgres", description=__doc__)
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--url", default=DEFAULT_URL, help="a PostgreSQL server to use")
    args = parser.parse_args()
    for name, (p50, p95) in asyncio.run(run(args.messages, args.url)).items():
        print(f"{name:9} add_user_turn+load_context  p50 {p50:8.0f} µs  p95 {p95:8.0f} µs")


if __name__ == "__main__":
    main()
