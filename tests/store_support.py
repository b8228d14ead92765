"""What the storage tests share: turns, a settable clock, a store of either kind."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

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
