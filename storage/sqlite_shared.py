"""SQLite statements for several instances on one database (bot/handoff.py,
bot/shared_limit.py); they mean what storage/postgres_sql.py's do."""

from __future__ import annotations

import sqlite3

from .sqlite_ops import SQL_PRUNE, TURN_COLUMNS

_T_COLUMNS = ", ".join("t." + c.strip() for c in TURN_COLUMNS.split(","))

SQL_TAKE_LEASE = """
    INSERT INTO leases (conversation, holder, at) VALUES (?1, ?2, ?3)
    ON CONFLICT (conversation) DO UPDATE SET holder = excluded.holder, at = excluded.at
    WHERE leases.holder = excluded.holder OR NOT EXISTS (
        SELECT 1 FROM instances AS i WHERE i.id = leases.holder AND i.heartbeat >= ?4)
"""
SQL_RELEASE_LEASE = "DELETE FROM leases WHERE conversation = ? AND holder = ?"
_WAITING = """
    FROM turns AS t
    JOIN seen AS s ON s.conversation = t.conversation AND s.message_id = t.message_id
    LEFT JOIN turns AS a
      ON a.conversation = t.conversation AND a.anchor = t.id AND a.role = 'assistant'
    WHERE t.role = 'user' AND t.anchor = t.id AND s.done = 0 AND s.at >= ?{since}
      AND (a.id IS NULL OR a.delivered = 0)
"""
SQL_WAITING_TURNS = f"""
    SELECT t.conversation, t.reply_target, t.is_dm, {_T_COLUMNS}
    {_WAITING.format(since="2")} AND t.conversation = ?1
    ORDER BY t.id LIMIT ?3
"""
SQL_ORPHANED = f"""
    SELECT DISTINCT t.conversation
    {_WAITING.format(since="1")}
      AND NOT EXISTS (
        SELECT 1 FROM leases AS l JOIN instances AS i ON i.id = l.holder
        WHERE l.conversation = t.conversation AND i.heartbeat >= ?2)
    LIMIT ?3
"""
SQL_ALIVE = "SELECT count(*) FROM instances WHERE heartbeat >= ?"
SQL_COUNT_MESSAGE = """
    INSERT INTO person_counts (person, minute, count) VALUES (?1, ?2, 1)
    ON CONFLICT (person) DO UPDATE SET
        count = CASE WHEN person_counts.minute >= excluded.minute
                     THEN person_counts.count + 1 ELSE 1 END,
        minute = MAX(person_counts.minute, excluded.minute)
    RETURNING count
"""
SQL_UNCOUNT_MESSAGE = """
    UPDATE person_counts SET count = count - 1 WHERE person = ? AND minute = ? AND count > 0
"""
SQL_PRUNE_COUNTS = "DELETE FROM person_counts WHERE minute < ?"


def prune_seen(con: sqlite3.Connection, cutoff: float, minute: int) -> int:
    """Dedupe rows older than ``cutoff`` and counts of minutes before ``minute``, in
    one write; how many dedupe rows went."""
    con.execute(SQL_PRUNE_COUNTS, (minute,))
    return con.execute(SQL_PRUNE, (cutoff,)).rowcount
