"""What the storage tests share: turns, a settable clock, a store of either kind."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.types import Turn
from storage import MemoryStore, SqliteStore
from storage.postgres import PostgresStore
from tests.postgres_support import postgres_schema

CONV = "discord:g1:c1::"
OTHER = "discord:g1:c2::"


def user(message_id: str | None, text: str = "hi", tokens: int = 1) -> Turn:
    return Turn(
        role="user",
        content=text,
        tokens=tokens,
        author_id="u1",
        author_name="Ann",
        message_id=message_id,
        created_at=1_700_000_000.5,
    )


def answer(reply_to: int | None, text: str = "hello", tokens: int = 2) -> Turn:
    return Turn(role="assistant", content=text, tokens=tokens, reply_to=reply_to)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


AnyStore = MemoryStore | SqliteStore | PostgresStore
KINDS = ["memory", "sqlite", "postgres"]  # every backend the shared tests run on


def make_store(kind: str, tmp_path: Path, clock: Callable[[], float]) -> AnyStore:
    if kind == "memory":
        return MemoryStore(clock=clock)
    return SqliteStore(str(tmp_path / "chat.db"), clock=clock)


@contextlib.asynccontextmanager
async def opened_store(
    kind: str, tmp_path: Path, clock: Callable[[], float], retention_days: float = 0.0
) -> AsyncIterator[AnyStore]:
    """An open store of ``kind``, empty, closed afterwards; a PostgreSQL one in a
    schema of its own (tests/postgres_support.py)."""
    async with contextlib.AsyncExitStack() as stack:
        store: AnyStore
        if kind == "postgres":
            url = await stack.enter_async_context(postgres_schema())
            store = PostgresStore(url, clock=clock, retention_days=retention_days)
        elif kind == "memory":
            store = MemoryStore(clock=clock, retention_days=retention_days)
        else:
            store = SqliteStore(
                str(tmp_path / "chat.db"), clock=clock, retention_days=retention_days
            )
        await store.open()
        stack.push_async_callback(store.close)
        yield store


NO_BEATS_S = 3600.0  # a heartbeat interval no test lives to see


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where several instances share their data: an SQLite file's path, or the URL
    of a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "bot.db")
        return
    async with postgres_schema() as url:
        yield url


@contextlib.asynccontextmanager
async def shared_stores(
    database: str, clock: FakeClock, count: int, heartbeat_s: float = NO_BEATS_S
) -> AsyncIterator[list[SqliteStore | PostgresStore]]:
    """``count`` stores on one database, as separate processes would open it."""
    stores: list[SqliteStore | PostgresStore] = [
        PostgresStore(database, clock=clock, heartbeat_s=heartbeat_s)
        if database.startswith("postgresql://")
        else SqliteStore(database, clock=clock, heartbeat_s=heartbeat_s)
        for _ in range(count)
    ]
    for s in stores:
        await s.open()
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()
