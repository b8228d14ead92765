"""The SQLite end of ``migrate-store``: reads in key order, writes in batches.

One plain ``sqlite3`` connection: the command does nothing else meanwhile, so
nothing is gained by a worker thread. Each batch is staged in a temporary table
and inserted in one transaction, so a batch is either all in or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .migrate_tables import Conflict, Row, Table, conflict_query, held_query
from .sqlite import BUSY_TIMEOUT_MS


class SqliteEndpoint:
    """Source or target of a copy, in an SQLite file whose schema is current."""

    def __init__(self, path: str) -> None:
        self._con = sqlite3.connect(path, isolation_level=None)
        self._con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._staged: set[str] = set()

    async def count(self, table: Table) -> int:
        """How many rows ``table`` holds."""
        return int(self._con.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])

    async def read(self, table: Table, after: Row | None, limit: int) -> list[Row]:
        """The next ``limit`` rows in key order after key ``after`` (None: from the start)."""
        keys = ", ".join(table.key)
        where = "" if after is None else f"WHERE ({keys}) > ({', '.join('?' * len(after))})"
        query = (
            f"SELECT {', '.join(table.columns)} FROM {table.name} {where} ORDER BY {keys} LIMIT ?"
        )
        return self._con.execute(query, (*(after or ()), limit)).fetchall()

    async def write(self, table: Table, rows: list[Row]) -> int:
        """Insert the rows whose key is new, in one transaction; how many were new.

        Raises :class:`Conflict` if a row with the same key
        but another identity is there already."""
        stage = self._stage(table)  # outside: a rollback would drop it
        columns = ", ".join(table.columns)
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            self._staged_rows(table, stage, rows)
            # WHERE true: without it SQLite would read ON as a join's ON.
            added = con.execute(
                f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {stage} "
                "WHERE true ON CONFLICT DO NOTHING"
            ).rowcount
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return int(added)

    async def compare(self, table: Table, rows: list[Row]) -> int:
        """How many of the rows this table holds under their key; writes nothing.

        Raises :class:`Conflict` as :meth:`write` would."""
        stage = self._stage(table)  # outside: the rollback would drop it
        self._con.execute("BEGIN")  # deferred: only the temporary stage is written
        try:
            self._staged_rows(table, stage, rows)
            return int(self._con.execute(held_query(table, stage)).fetchone()[0])
        finally:
            self._con.execute("ROLLBACK")

    def _staged_rows(self, table: Table, stage: str, rows: list[Row]) -> None:
        """The rows in the stage (inside the caller's transaction), checked for a clash."""
        marks = ", ".join("?" * len(table.columns))
        self._con.execute(f"DELETE FROM {stage}")
        self._con.executemany(
            f"INSERT INTO {stage} VALUES ({marks})", map(_for_sqlite(table), rows)
        )
        clash = self._con.execute(conflict_query(table, stage, "IS")).fetchone()
        if clash is not None:
            raise Conflict(table.name, clash)

    def _stage(self, table: Table) -> str:
        stage = f"temp.stage_{table.name}"
        if table.name not in self._staged:
            columns = ", ".join(table.columns)
            self._con.execute(
                f"CREATE TEMP TABLE stage_{table.name} AS "
                f"SELECT {columns} FROM {table.name} WHERE 0"
            )
            self._staged.add(table.name)
        return stage

    async def id_high_water(self, table: Table) -> int:
        """The highest id ``table`` ever handed out (a reset deletes rows, not the mark)."""
        row = self._con.execute(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?), 0), "
            f"coalesce((SELECT max(id) FROM {table.name}), 0))",
            (table.name,),
        ).fetchone()
        return int(row[0])

    async def raise_id_high_water(self, table: Table, value: int) -> None:
        """New rows of ``table`` here get ids above ``value``: none reuses a copied id."""
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            updated = con.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (value, table.name)
            ).rowcount
            if not updated:
                con.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table.name, value)
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    async def live_instances(self, since: float) -> list[tuple[str, float]]:
        """Open stores (running bots) that beat at or after ``since``: (id, heartbeat)."""
        query = "SELECT id, heartbeat FROM instances WHERE heartbeat >= ? ORDER BY heartbeat"
        return [(str(i), float(h)) for i, h in self._con.execute(query, (since,))]

    async def close(self) -> None:
        """Close the connection."""
        self._con.close()


def _for_sqlite(table: Table) -> Callable[[Row], Row]:
    flags = [table.index(c) for c in table.booleans]

    def convert(row: Row) -> Row:
        if not flags:
            return tuple(row)
        values = list(row)
        for i in flags:
            values[i] = int(bool(values[i]))
        return tuple(values)

    return convert
