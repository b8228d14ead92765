"""For ``python -m bot check``: the instances alive on a database, read without
opening a store (nothing is created, migrated or registered)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from bot.instances import STALE_AFTER_S

from .problems import describe

CONNECT_TIMEOUT_S = 5.0
SQL_ALIVE_IDS = "SELECT id FROM instances WHERE heartbeat >= {} ORDER BY id"


async def alive_ids(url: str, *, clock: float | None = None) -> list[str]:
    """Ids of the instances whose heartbeat is younger than ``STALE_AFTER_S``: none
    for ``memory://``, a missing file or a database no instance has opened yet.
    Raises the ConfigError naming storage.url that opening the store would when the
    database cannot be read, so ``check`` fails as a start would."""
    since = (time.time() if clock is None else clock) - STALE_AFTER_S
    scheme, _, rest = url.strip().partition("://")
    if scheme.lower() in ("postgresql", "postgres"):
        return await _postgres_ids(url.strip(), since)
    if scheme.lower() == "sqlite" and rest.startswith("/") and rest != "/:memory:":
        return _sqlite_ids(Path(rest[1:]), since)
    return []


async def _postgres_ids(url: str, since: float) -> list[str]:
    import asyncpg  # only for a PostgreSQL URL

    from .postgres import DRIVER_FAILURES, OPEN_FAILURES, no_answer_to_connect, unusable

    try:
        con = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    except OPEN_FAILURES as exc:
        raise unusable(url, exc, no_answer_to_connect(CONNECT_TIMEOUT_S)) from None
    try:
        return [str(r[0]) for r in await con.fetch(SQL_ALIVE_IDS.format("$1"), since)]
    except asyncpg.UndefinedTableError:
        return []
    except DRIVER_FAILURES as exc:  # e.g. a role without the right to read the table
        raise unusable(url, exc) from None
    finally:
        await con.close()


def _sqlite_ids(path: Path, since: float) -> list[str]:
    if not path.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return [str(r[0]) for r in db.execute(SQL_ALIVE_IDS.format("?"), (since,))]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise describe(str(path), exc) from None
