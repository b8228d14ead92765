"""What ``migrate-store`` copies: the tables that hold what users said, set and used.

Both backends have these tables with these columns (storage/migrations.py,
storage/postgres_sql.py). ``instances`` is not copied: it names the processes
using one database, and a copied row would be a process that never ran there.
Nor are ``leases`` and ``person_counts``: they coordinate the instances running
now (who answers a conversation, a person's messages this minute), so a copied
row would name a holder that never ran on the target, or count a minute long gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Row = tuple[Any, ...]  # one row, its values in Table.columns order


@dataclass(frozen=True, slots=True)
class Table:
    """One copied table: its columns, its key (the copy's order and its dedupe)."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    booleans: tuple[str, ...] = ()  # INTEGER 0/1 in SQLite, BOOLEAN in PostgreSQL
    texts: tuple[str, ...] = ()  # may hold NUL, which PostgreSQL's TEXT refuses
    # A target row with the same key must agree on these, or it is another row
    # that happens to have the key (a database the bot already used): a conflict.
    identity: tuple[str, ...] = ()
    # Its ids come from a counter (PostgreSQL: this sequence; SQLite: its
    # sqlite_sequence row), moved past the copied ids so that none is reused.
    sequence: str = ""

    def index(self, column: str) -> int:
        """The position of ``column`` in a row of this table."""
        return self.columns.index(column)


SETTINGS = Table(
    name="conversation_settings",
    columns=("conversation", "system_prompt", "model"),
    key=("conversation",),
    texts=("system_prompt", "model"),
)
SEEN = Table(
    name="seen",
    columns=("conversation", "message_id", "at", "done", "owner"),
    key=("conversation", "message_id"),
    booleans=("done",),
)
TURNS = Table(
    name="turns",
    columns=(
        "id",
        "conversation",
        "role",
        "content",
        "tokens",
        "author_id",
        "author_name",
        "message_id",
        "created_at",
        "reply_to",
        "anchor",
        "delivered",
        "reply_target",
        "is_dm",
        "tools",
    ),
    key=("id",),
    booleans=("delivered", "is_dm"),
    texts=("content", "author_id", "author_name", "tools"),
    identity=("conversation", "role", "message_id", "created_at"),
    sequence="turns_id",
)
# The ledger quotas read: a row the target holds already is kept (it may be the
# copied one that a bot went on adding to), as settings and dedupe rows are.
USAGE = Table(
    name="usage",
    columns=(
        "workspace",
        "day",
        "person",
        "conversation",
        "model",
        "estimated",
        "answers",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "unpriced",
    ),
    key=("workspace", "day", "person", "conversation", "model", "estimated"),
    booleans=("estimated",),
)
MEDIA = Table(
    name="media",
    columns=(
        "id",
        "conversation",
        "turn_id",
        "kind",
        "name",
        "text",
        "data",
        "size",
        "tokens",
        "created_at",
    ),
    key=("id",),
    texts=("name", "text"),
    identity=("conversation", "turn_id", "kind", "created_at"),
    sequence="media_id",
)
# Id counters are carried over once every table is in.
TABLES = (SETTINGS, SEEN, USAGE, TURNS, MEDIA)


class Conflict(Exception):
    """The target holds another row under a key being copied: it is not empty,
    nor a copy of this source."""

    def __init__(self, table: str, key: tuple[object, ...]) -> None:
        super().__init__(f"{table} {', '.join(map(str, key))}")
        self.table = table
        self.key = key


def conflict_query(table: Table, stage: str, same: str) -> str:
    """One staged row whose key the table holds with another identity, if any.
    ``same`` is the dialect's NULL-safe equality (``IS``, ``IS NOT DISTINCT FROM``)."""
    if not table.identity:
        return "SELECT 1 WHERE false"
    agree = " AND ".join(f"t.{c} {same} s.{c}" for c in table.identity)
    keys = ", ".join(f"s.{k}" for k in table.key)
    return f"SELECT {keys} FROM {_joined(table, stage)} WHERE NOT ({agree}) LIMIT 1"


def held_query(table: Table, stage: str) -> str:
    """How many staged rows have a key the table holds."""
    return f"SELECT count(*) FROM {_joined(table, stage)}"


def _joined(table: Table, stage: str) -> str:
    on = " AND ".join(f"t.{k} = s.{k}" for k in table.key)
    return f"{stage} AS s JOIN {table.name} AS t ON {on}"
