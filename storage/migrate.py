"""``python -m bot migrate-store --from URL --to URL``: copy one store into another.

Copies conversation settings (system prompt, model), dedupe records, the usage
ledger, turns (every column: reply targets, delivery marks, order anchors, tool
calls, ids) and attachments between SQLite and PostgreSQL, either way.
Rows go in key order and in batches, each batch one transaction that inserts
only keys the target lacks: run twice, nothing is copied twice; killed midway,
a second run copies the rest. A target row under a copied key that is another
turn (a database the bot already wrote to) refuses the copy instead of being
mixed with it, and is looked for before anything is copied: a refused copy
leaves the target as it was. Run it with the bot stopped: a store a bot has
open (its heartbeat in ``instances``, bot/instances.py) is refused.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from bot.errors import ConfigError, StartupError
from bot.instances import STALE_AFTER_S
from bot.redact import redact_url

from . import open_store
from .memory import MemoryStore
from .migrate_progress import Progress
from .migrate_sqlite import SqliteEndpoint
from .migrate_tables import TABLES, Conflict, Row, Table
from .sqlite import MEMORY_PATH, SqliteStore

BATCH_ROWS = 10_000  # per transaction: COPY's cost is per batch, a kill loses one
SOURCE_FLAG, TARGET_FLAG, BATCH_FLAG = "--from", "--to", "--batch-size"


class Endpoint(Protocol):
    """One side of the copy (storage/migrate_sqlite.py, storage/migrate_pg.py)."""

    async def count(self, table: Table) -> int: ...
    async def read(self, table: Table, after: Row | None, limit: int) -> list[Row]: ...
    async def write(self, table: Table, rows: list[Row]) -> int: ...
    async def compare(self, table: Table, rows: list[Row]) -> int: ...
    async def id_high_water(self, table: Table) -> int: ...
    async def raise_id_high_water(self, table: Table, value: int) -> None: ...
    async def live_instances(self, since: float) -> list[tuple[str, float]]: ...
    async def close(self) -> None: ...


class MigrationError(StartupError):
    """A copy that cannot start or go on: one line naming the flag, exit 2."""

    def __init__(self, flag: str, problem: str) -> None:
        super().__init__(f"migrate-store: {flag}: {problem}")


@dataclass(frozen=True, slots=True)
class Copied:
    """One table's outcome: rows inserted, and rows the target already held."""

    table: str
    copied: int
    skipped: int


@dataclass(frozen=True, slots=True)
class Summary:
    tables: tuple[Copied, ...]
    seconds: float

    def lines(self) -> list[str]:
        """The summary printed at the end."""
        shown = [
            f"{t.table}: {t.copied:,} copied, {t.skipped:,} already there" for t in self.tables
        ]
        return [*shown, f"done in {self.seconds:.1f} s"]


AfterBatch = Callable[[str, int], None]  # table, rows in the batch (tests interrupt here)


async def migrate_store(
    source: str,
    target: str,
    *,
    batch_rows: int = BATCH_ROWS,
    progress_to: TextIO | None = None,
    after_batch: AfterBatch | None = None,
) -> Summary:
    """Copy everything ``source`` stores into ``target`` (see the module docstring)."""
    started = time.monotonic()
    if _same(source, target):
        raise MigrationError(TARGET_FLAG, f"{redact_url(target)!r} is the source itself")
    reader = await _endpoint(source, SOURCE_FLAG)
    try:
        writer = await _endpoint(target, TARGET_FLAG)
        try:
            await _refuse_if_in_use(reader, SOURCE_FLAG)
            await _refuse_if_in_use(writer, TARGET_FLAG)
            for table in TABLES:
                await _refuse_if_mixed(reader, writer, table, batch_rows)
            totals = [await reader.count(table) for table in TABLES]
            progress = Progress(progress_to or sys.stderr, sum(totals))
            results = []
            try:
                for table in TABLES:
                    results.append(
                        await _copy(reader, writer, table, batch_rows, progress, after_batch)
                    )
            finally:  # an error line then starts on a line of its own
                progress.finish()
            for table in TABLES:
                if table.sequence:
                    await writer.raise_id_high_water(table, await reader.id_high_water(table))
        finally:
            await writer.close()
    finally:
        await reader.close()
    return Summary(tuple(results), time.monotonic() - started)


async def _copy(
    reader: Endpoint,
    writer: Endpoint,
    table: Table,
    batch_rows: int,
    progress: Progress,
    after_batch: AfterBatch | None,
) -> Copied:
    keys = [table.index(k) for k in table.key]
    copied = skipped = 0
    after: Row | None = None
    while rows := await reader.read(table, after, batch_rows):
        try:
            added = await writer.write(table, rows)
        except Conflict as exc:  # written there since the check: a bot started on it
            raise _mixed(table, exc) from None
        copied, skipped = copied + added, skipped + len(rows) - added
        after = tuple(rows[-1][i] for i in keys)
        progress.advance(len(rows), table.name)
        if after_batch is not None:
            after_batch(table.name, len(rows))
    return Copied(table.name, copied, skipped)


async def _refuse_if_mixed(
    reader: Endpoint, writer: Endpoint, table: Table, batch_rows: int
) -> None:
    """Refuse, before anything is copied, a target holding another row under a key
    of ``table`` the source has: a refused run then leaves the target as it was."""
    # Read the source only until every target row has been met: nothing for an
    # empty target, the part copied before for one a killed run of this copy filled.
    if not table.identity:
        return  # its rows are kept as they are (see storage/migrate_tables.py)
    held = await writer.count(table)
    keys = [table.index(k) for k in table.key]
    after: Row | None = None
    while held and (rows := await reader.read(table, after, batch_rows)):
        try:
            held -= await writer.compare(table, rows)
        except Conflict as exc:
            raise _mixed(table, exc) from None
        after = tuple(rows[-1][i] for i in keys)


def _mixed(table: Table, conflict: Conflict) -> MigrationError:
    return MigrationError(
        TARGET_FLAG,
        f"{table.name} {', '.join(table.key)} {conflict.key} already holds another row; "
        "copy into an empty database (or the one an earlier run of this copy filled)",
    )


async def _refuse_if_in_use(endpoint: Endpoint, flag: str) -> None:
    """A bot running on either store would write rows the copy misses or collides with."""
    now = time.time()
    live = await endpoint.live_instances(now - STALE_AFTER_S)
    if live:
        instance, beat = live[-1]
        raise MigrationError(
            flag,
            f"a bot is using this store (instance {instance}, seen {max(now - beat, 0):.0f} s "
            f"ago); stop it first (a killed one counts as gone after {STALE_AFTER_S:.0f} s)",
        )


async def _endpoint(url: str, flag: str) -> Endpoint:
    """Open the store at ``url`` once (creating or migrating its schema), then a
    plain connection to it for the copy."""
    try:
        store = open_store(url)
    except ConfigError as exc:
        raise MigrationError(flag, exc.problem) from None
    if isinstance(store, MemoryStore) or getattr(store, "path", None) == MEMORY_PATH:
        raise MigrationError(flag, "an in-memory store holds nothing after the copy; use a file")
    path = store.path if isinstance(store, SqliteStore) else None
    if path is not None and flag == SOURCE_FLAG and not Path(path).is_file():  # noqa: ASYNC240
        raise MigrationError(flag, f"no SQLite file at {path!r}")
    try:
        await store.open()
    except ConfigError as exc:
        raise MigrationError(flag, exc.problem) from None
    await store.close()
    if isinstance(store, SqliteStore):
        return SqliteEndpoint(store.path)
    from .migrate_pg import PostgresEndpoint  # only a PostgreSQL URL loads the driver

    return await PostgresEndpoint.connect(url.strip())


def _same(source: str, target: str) -> bool:
    def norm(url: str) -> str:
        scheme, _, rest = url.strip().partition("://")
        scheme = "postgresql" if scheme.lower() == "postgres" else scheme.lower()
        return f"{scheme}://{rest}"

    return norm(source) == norm(target)


def run_migration(source: str | None, target: str | None, batch_rows: int | None = None) -> int:
    """The command: check its flags, copy, print the summary on stdout; 0 when done."""
    if not source:
        raise MigrationError(SOURCE_FLAG, "missing; give the URL of the store to copy")
    if not target:
        raise MigrationError(TARGET_FLAG, "missing; give the URL of the store to copy into")
    if batch_rows is not None and batch_rows < 1:
        raise MigrationError(BATCH_FLAG, f"must be at least 1, got {batch_rows}")
    summary = asyncio.run(migrate_store(source, target, batch_rows=batch_rows or BATCH_ROWS))
    print("\n".join(summary.lines()))
    return 0
