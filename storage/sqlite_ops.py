"""SQLite statements of the store, as plain functions of a ``sqlite3.Connection``.

Each function is one trip to the database: storage/sqlite.py runs it on the event
loop's thread, or on the writer (storage/sqlite_writer.py, in a child process for a
file) when it must be able to wait; a writer's function must pickle, so it is a
module-level function.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from bot.types import Turn

from . import usage_sql

_T = TypeVar("_T")

# A stored turn: its anchor (its place in the order) and its row, or None if
# nothing was stored (a redelivered message, or an answer to a reset turn).
Stored = tuple[int, Any] | None

TURN_COLUMNS = (
    "id, role, content, tokens, author_id, author_name, message_id, created_at, reply_to, tools"
)
SQL_RECENT = f"""
    SELECT {TURN_COLUMNS} FROM turns
    WHERE conversation = ? AND anchor <= ? AND delivered = 1
    ORDER BY anchor DESC, id DESC LIMIT ?
"""
SQL_NEWEST = f"""
    SELECT anchor, {TURN_COLUMNS} FROM turns
    WHERE conversation = ? AND delivered = 1
    ORDER BY anchor DESC, id DESC LIMIT ?
"""
SQL_PENDING = f"""
    SELECT t.id, {", ".join("a." + c.strip() for c in TURN_COLUMNS.split(","))}
    FROM turns AS t
    JOIN seen AS s ON s.conversation = t.conversation AND s.message_id = t.message_id
    LEFT JOIN turns AS a
      ON a.conversation = t.conversation AND a.anchor = t.id AND a.role = 'assistant'
    WHERE t.conversation = ? AND t.message_id = ? AND t.role = 'user' AND s.done = 0
      AND (a.id IS NULL OR a.delivered = 0)
    LIMIT 1
"""
SQL_MARK_DELIVERED = "UPDATE turns SET delivered = 1 WHERE id = ? AND conversation = ?"
SQL_MARK_DONE = "UPDATE seen SET done = 1 WHERE conversation = ? AND message_id = ?"
SQL_INSERT_TURN = f"""
    INSERT INTO turns (conversation, role, content, tokens, author_id, author_name,
                       message_id, created_at, reply_to, anchor, delivered, tools)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(?, 0), ?, ?)
    RETURNING {TURN_COLUMNS}
"""
SQL_SELF_ANCHOR = "UPDATE turns SET anchor = id WHERE id = ?"
SQL_CLAIM = "INSERT OR IGNORE INTO seen (conversation, message_id, at) VALUES (?, ?, ?)"
SQL_SEEN = "SELECT 1 FROM seen WHERE conversation = ? AND message_id = ?"
# -- restart recovery (bot/instances.py) --
SQL_ANCHOR_USER = "UPDATE turns SET anchor = id, reply_target = ?, is_dm = ? WHERE id = ?"
SQL_CLAIM_OWNED = """
    INSERT OR IGNORE INTO seen (conversation, message_id, at, owner) VALUES (?, ?, ?, ?)
"""
SQL_BEAT = """
    INSERT INTO instances (id, heartbeat, host, pid) VALUES (?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat
"""
SQL_LOCAL_INSTANCES = "SELECT id, pid FROM instances WHERE host = ? AND id <> ?"
SQL_UNREGISTER = "DELETE FROM instances WHERE id = ?"
SQL_FORGET_INSTANCES = "DELETE FROM instances WHERE heartbeat < ?"
# Parameters: this instance's id, the oldest heartbeat that still counts as alive.
_TAKEABLE = """
    (seen.owner IS NULL OR seen.owner = ? OR NOT EXISTS (
        SELECT 1 FROM instances AS i WHERE i.id = seen.owner AND i.heartbeat >= ?))
"""
SQL_TAKE_OVER = f"""
    UPDATE seen SET owner = ?
    WHERE conversation = ? AND message_id = ? AND done = 0 AND {_TAKEABLE}
"""
SQL_ABANDON = f"""
    UPDATE seen SET done = 1
    WHERE conversation = ? AND message_id = ? AND done = 0 AND {_TAKEABLE}
"""
# Cut-off user turns by the time they were stored: no answer, or one not delivered.
_CUT_OFF = """
    FROM seen AS s
    JOIN turns AS t
      ON t.conversation = s.conversation AND t.message_id = s.message_id AND t.role = 'user'
    LEFT JOIN turns AS a
      ON a.conversation = t.conversation AND a.anchor = t.id AND a.role = 'assistant'
    WHERE s.at >= ? AND s.at < ? AND s.done = 0 AND (a.id IS NULL OR a.delivered = 0)
"""
SQL_UNANSWERED = f"""
    SELECT s.conversation, t.reply_target, t.is_dm,
           {", ".join("t." + c.strip() for c in TURN_COLUMNS.split(","))}
    {_CUT_OFF}
    ORDER BY s.at, t.id LIMIT ?
"""
SQL_CUT_OFF_KEYS = f"SELECT s.conversation, s.message_id {_CUT_OFF} ORDER BY s.at LIMIT ?"
SQL_PRUNE = "DELETE FROM seen WHERE at < ?"
# One batch of the retention prune: an index range on created_at, a few rows.
SQL_PRUNE_TURNS = """
    DELETE FROM turns WHERE id IN (SELECT id FROM turns WHERE created_at < ? LIMIT ?)
"""
SQL_TURN_EXISTS = "SELECT 1 FROM turns WHERE id = ? AND conversation = ?"
SQL_HAS_TURNS = "SELECT 1 FROM turns WHERE conversation = ? LIMIT 1"
SQL_RESET = "DELETE FROM turns WHERE conversation = ?"
# -- attachments (see storage/postgres_sql.py for the budget query) --
SQL_ADD_MEDIA = """
    INSERT INTO media (conversation, turn_id, kind, name, text, data, size, tokens, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
SQL_TRIM_IMAGES = """
    DELETE FROM media WHERE id IN (
        SELECT id FROM (
            SELECT id, sum(size) OVER (ORDER BY id DESC) AS total
            FROM media WHERE conversation = ? AND kind = 'image'
        ) WHERE total > ?
    )
"""
SQL_MEDIA_FOR = """
    SELECT turn_id, kind, name, text, data, tokens FROM media
    WHERE conversation = ? AND turn_id BETWEEN ? AND ? ORDER BY id
"""
SQL_RESET_MEDIA = "DELETE FROM media WHERE conversation = ?"
SQL_GET_MODEL = "SELECT model FROM conversation_settings WHERE conversation = ?"
SQL_SET_MODEL = """
    INSERT INTO conversation_settings (conversation, model) VALUES (?, ?)
    ON CONFLICT (conversation) DO UPDATE SET model = excluded.model
"""
SQL_PRUNE_MEDIA = "DELETE FROM media WHERE created_at < ?"
SQL_GET_PROMPT = "SELECT system_prompt FROM conversation_settings WHERE conversation = ?"
SQL_SET_PROMPT = """
    INSERT INTO conversation_settings (conversation, system_prompt) VALUES (?, ?)
    ON CONFLICT (conversation) DO UPDATE SET system_prompt = excluded.system_prompt
"""


@contextmanager
def _immediate(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error: all or nothing, so a
    function that fails on a busy file can run again elsewhere. Inside a transaction
    already (the writer's group), it is part of that one."""
    if con.in_transaction:
        yield con
        return
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.rollback()
        raise
    con.execute("COMMIT")


def add_media(
    con: sqlite3.Connection, rows: list[tuple[Any, ...]], conversation: str, budget: int
) -> None:
    """Insert attachment rows and trim the conversation's images, in one transaction."""
    with _immediate(con):
        con.executemany(SQL_ADD_MEDIA, rows)
        con.execute(SQL_TRIM_IMAGES, (conversation, budget))


def execute(con: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    """One statement; the number of rows it changed."""
    return con.execute(sql, params).rowcount


def execute_many(con: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> int:
    """One statement for each row (in the caller's transaction); rows changed."""
    return con.executemany(sql, rows).rowcount


def fetch_one(con: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    """The first row of a query, or None."""
    return con.execute(sql, params).fetchone()


def fetch_all(con: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """Every row of a query."""
    return con.execute(sql, params).fetchall()


def data_version(con: sqlite3.Connection) -> int:
    """SQLite's count of commits by other connections, as this one sees it."""
    return int(con.execute("PRAGMA data_version").fetchone()[0])


def checkpoint(con: sqlite3.Connection) -> tuple[int, int, int]:
    """Copy what the WAL holds into the database file without waiting for anyone
    (PASSIVE); (busy, frames in the WAL, frames copied)."""
    busy, frames, copied = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(frames), int(copied)


def add_user_turn(
    con: sqlite3.Connection,
    conversation: str,
    turn: Turn,
    now: float,
    owner: str | None = None,
    target: str | None = None,
    is_dm: bool = False,
) -> Stored:
    with _immediate(con):
        if turn.message_id is not None:
            params = (conversation, turn.message_id, now, owner)
            if con.execute(SQL_CLAIM_OWNED, params).rowcount != 1:
                return None
        row = insert_turn(con, conversation, turn, anchor=None)
        con.execute(SQL_ANCHOR_USER, (target, int(is_dm), row[0]))
        return int(row[0]), row


def abandon(
    con: sqlite3.Connection,
    window: tuple[float, float],
    me: str,
    alive_after: float,
    limit: int,
) -> list[tuple[str, str]]:
    """Mark done the cut-off messages stored in ``window`` that no live instance
    holds; their keys. The search (a scan of the window) only reads, so writers
    are not held up by it; each mark is conditional, so an owner that came back to
    life in between keeps its message."""
    keys = con.execute(SQL_CUT_OFF_KEYS, (*window, limit)).fetchall()
    with _immediate(con):
        return [
            (str(conv), str(mid))
            for conv, mid in keys
            if con.execute(SQL_ABANDON, (conv, mid, me, alive_after)).rowcount == 1
        ]


def add_assistant_turn(con: sqlite3.Connection, conversation: str, turn: Turn) -> Stored:
    with _immediate(con):
        if turn.reply_to is None:  # not answering anything: sort by arrival
            return _insert_self_anchored(con, conversation, turn)
        if con.execute(SQL_TURN_EXISTS, (turn.reply_to, conversation)).fetchone() is None:
            return None
        return turn.reply_to, insert_turn(con, conversation, turn, anchor=turn.reply_to)


def _insert_self_anchored(con: sqlite3.Connection, conversation: str, turn: Turn) -> Stored:
    row = insert_turn(con, conversation, turn, anchor=None)
    con.execute(SQL_SELF_ANCHOR, (row[0],))
    return int(row[0]), row


def insert_turn(con: sqlite3.Connection, conversation: str, turn: Turn, anchor: int | None) -> Any:
    """Insert a turn; the row as stored (``TURN_COLUMNS``). Anchor None means "fix it
    up to the id" (the row then says anchor 0 until the caller does)."""
    params = (
        conversation,
        turn.role,
        turn.content,
        turn.tokens,
        turn.author_id,
        turn.author_name,
        turn.message_id,
        turn.created_at,
        turn.reply_to,
        anchor,
        int(turn.delivered),
        turn.tools,
    )
    return con.execute(SQL_INSERT_TURN, params).fetchone()


def load_context(
    conn: sqlite3.Connection, conversation: str, upto: int, limit: int
) -> tuple[str | None, list[Any]]:
    prompt = conn.execute(SQL_GET_PROMPT, (conversation,)).fetchone()
    rows = conn.execute(SQL_RECENT, (conversation, upto, limit)).fetchall() if limit > 0 else []
    return (None if prompt is None else opt_str(prompt[0])), rows


def load_newest(
    conn: sqlite3.Connection, conversation: str, limit: int
) -> tuple[str | None, list[Any]]:
    """The conversation's prompt and its newest ``limit`` delivered turns, newest
    first, as (anchor, TURN_COLUMNS...) rows: what the turn cache is filled with."""
    prompt = conn.execute(SQL_GET_PROMPT, (conversation,)).fetchone()
    rows = conn.execute(SQL_NEWEST, (conversation, limit)).fetchall()
    return (None if prompt is None else opt_str(prompt[0])), rows


def row_to_turn(row: Iterable[Any], delivered: bool = True) -> Turn:
    (
        turn_id,
        role,
        content,
        tokens,
        author_id,
        author_name,
        message_id,
        created_at,
        reply_to,
        tools,
    ) = row
    # Positional, in Turn's field order: an answer converts up to HISTORY_TURNS rows,
    # and keywords cost a third more per row.
    return Turn(
        "assistant" if role == "assistant" else "user",  # CHECK allows only these
        content,
        tokens,
        author_id,
        author_name,
        message_id,
        created_at,
        turn_id,
        reply_to,
        delivered,
        tools,
    )


def opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def check_role(turn: Turn, role: str) -> None:
    if turn.role != role:
        raise ValueError(f"expected a {role} turn, got {turn.role!r}")


def forget_person(con: sqlite3.Connection, prefix: str, person: str) -> int:
    """Delete a person's turns, and the answers to them, in one workspace; how many
    of theirs (in the caller's write transaction: both deletes or neither)."""
    params = usage_sql.forget_params(prefix, person)
    con.execute(usage_sql.SQL_FORGET_ANSWERS, params)
    return con.execute(usage_sql.SQL_FORGET_TURNS, params).rowcount
