"""The PostgreSQL end of ``migrate-store``: reads in key order, writes with COPY.

A batch goes to a temporary table by COPY (asyncpg's binary
``copy_records_to_table``, one round trip for thousands of rows), then into the
real table with ``ON CONFLICT DO NOTHING``, in one transaction: a batch is either
all in or not at all, and a row copied before is not copied again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from .migrate_tables import Conflict, Row, Table, conflict_query, held_query
from .postgres import COMMAND_TIMEOUT_S, CONNECT_TIMEOUT_S, NUL_SHOWN_AS


class PostgresEndpoint:
    """Source or target of a copy, in a PostgreSQL database whose schema is current."""

    def __init__(self, con: Any) -> None:
        self._con = con
        self._staged: set[str] = set()

    @classmethod
    async def connect(cls, url: str) -> PostgresEndpoint:
        """One connection to ``url`` (the store was opened once: it is reachable)."""
        con = await asyncpg.connect(
            url, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S
        )
        return cls(con)

    async def count(self, table: Table) -> int:
        """How many rows ``table`` holds."""
        return int(await self._con.fetchval(f"SELECT count(*) FROM {table.name}"))

    async def read(self, table: Table, after: Row | None, limit: int) -> list[Row]:
        """The next ``limit`` rows in key order after key ``after`` (None: from the start)."""
        keys = ", ".join(table.key)
        marks = ", ".join(f"${i + 1}" for i in range(len(after or ())))
        where = "" if after is None else f"WHERE ({keys}) > ({marks})"
        query = (
            f"SELECT {', '.join(table.columns)} FROM {table.name} {where} "
            f"ORDER BY {keys} LIMIT ${len(after or ()) + 1}"
        )
        return [tuple(r) for r in await self._con.fetch(query, *(after or ()), limit)]

    async def write(self, table: Table, rows: list[Row]) -> int:
        """Insert the rows whose key is new, in one transaction; how many were new.

        Raises :class:`Conflict` if a row with the same key but another identity
        is there already."""
        stage = await self._stage(table)  # outside: a rollback would drop it
        columns = ", ".join(table.columns)
        async with self._con.transaction():
            await self._staged_rows(table, stage, rows)
            status = await self._con.execute(
                f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {stage} "
                "ON CONFLICT DO NOTHING"
            )
        return int(str(status).rsplit(" ", 1)[-1])

    async def compare(self, table: Table, rows: list[Row]) -> int:
        """How many of the rows this table holds under their key; writes nothing.

        Raises :class:`Conflict` as :meth:`write` would."""
        stage = await self._stage(table)  # outside: the rollback would drop it
        tx = self._con.transaction()
        await tx.start()
        try:
            await self._staged_rows(table, stage, rows)
            return int(await self._con.fetchval(held_query(table, stage)))
        finally:
            await tx.rollback()  # the staged rows go with it

    async def _staged_rows(self, table: Table, stage: str, rows: list[Row]) -> None:
        """The rows in the stage (inside the caller's transaction), checked for a clash."""
        convert = _for_postgres(table)
        await self._con.copy_records_to_table(
            stage.removeprefix("pg_temp."),
            records=[convert(row) for row in rows],
            columns=list(table.columns),
            schema_name="pg_temp",
        )
        clash = await self._con.fetchrow(conflict_query(table, stage, "IS NOT DISTINCT FROM"))
        if clash is not None:
            raise Conflict(table.name, tuple(clash))

    async def _stage(self, table: Table) -> str:
        stage = f"pg_temp.stage_{table.name}"
        if table.name not in self._staged:
            # Emptied by every commit: each batch starts with an empty stage.
            await self._con.execute(
                f"CREATE TEMP TABLE stage_{table.name} (LIKE {table.name} INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            )
            self._staged.add(table.name)
        return stage

    async def id_high_water(self, table: Table) -> int:
        """The highest id ``table`` ever handed out (a reset deletes rows, not the mark)."""
        value = await self._con.fetchval(
            f"SELECT greatest((SELECT max(id) FROM {table.name}), ({_handed_out(table)}), 0)"
        )
        return int(value)

    async def raise_id_high_water(self, table: Table, value: int) -> None:
        """New rows of ``table`` here get ids above ``value`` and above every row it
        holds: none reuses a copied id."""
        # Against the sequence alone: the table holds the copied rows by now, and
        # their ids are what the sequence has yet to pass.
        held = await self._con.fetchval(f"SELECT coalesce(max(id), 0) FROM {table.name}")
        wanted = max(value, int(held))
        if wanted > int(await self._con.fetchval(_handed_out(table))):
            await self._con.execute(f"SELECT setval('{table.sequence}', $1)", wanted)

    async def live_instances(self, since: float) -> list[tuple[str, float]]:
        """Open stores (running bots) that beat at or after ``since``: (id, heartbeat)."""
        query = "SELECT id, heartbeat FROM instances WHERE heartbeat >= $1 ORDER BY heartbeat"
        return [(str(r[0]), float(r[1])) for r in await self._con.fetch(query, since)]

    async def close(self) -> None:
        """Close the connection."""
        await self._con.close()


def _handed_out(table: Table) -> str:
    """The query for the last id ``table``'s sequence gave (0 before its first)."""
    return f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {table.sequence}"


def _for_postgres(table: Table) -> Callable[[Row], Row]:
    flags = [table.index(c) for c in table.booleans]
    texts = [table.index(c) for c in table.texts]

    def convert(row: Row) -> Row:
        values = list(row)
        for i in flags:
            values[i] = bool(values[i])
        for i in texts:
            if isinstance(values[i], str) and "\x00" in values[i]:
                values[i] = values[i].replace("\x00", NUL_SHOWN_AS)  # as the store does
        return tuple(values)

    return convert
