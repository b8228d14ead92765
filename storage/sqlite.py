"""The SQLite store: history, settings and durable dedupe in one file."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from bot.errors import StartupError
from bot.store import Pending, StoredContext
from bot.types import Turn

from .migrations import MIGRATIONS, SCHEMA_VERSION, SEEN_RETENTION_S

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MEMORY_PATH = ":memory:"
# Another instance sharing the file may hold the write lock for a moment.
BUSY_TIMEOUT_MS = 5000
WAL_SWITCH_RETRY_S = 0.01  # pause between tries of the WAL switch (see _switch_to_wal)
# WAL + synchronous=NORMAL: a commit is appended to the WAL with write(), so
# once it returns the data sits in the OS page cache and survives the process
# being killed (tests/test_storage_crash.py SIGKILLs a writer to check this).
# Only an OS crash or power loss can drop the last few commits, and never
# corrupts the file. FULL would fsync on every message for that rare case.
SYNCHRONOUS = "NORMAL"
# Read the file through a memory map: a conversation's turns sit on pages spread
# over the file, and loading one costs a read() per page otherwise. Only the address
# space is reserved; pages count as memory once touched, and the OS can drop them.
MMAP_BYTES = 256 * 1024 * 1024
PRUNE_INTERVAL_S = 3600.0

_TURN_COLUMNS = (
    "id, role, content, tokens, author_id, author_name, message_id, created_at, reply_to"
)
_SQL_RECENT = f"""
    SELECT {_TURN_COLUMNS} FROM turns
    WHERE conversation = ? AND anchor <= ? AND delivered = 1
    ORDER BY anchor DESC, id DESC LIMIT ?
"""
_SQL_PENDING = f"""
    SELECT t.id, {", ".join("a." + c.strip() for c in _TURN_COLUMNS.split(","))}
    FROM turns AS t
    JOIN seen AS s ON s.conversation = t.conversation AND s.message_id = t.message_id
    LEFT JOIN turns AS a
      ON a.conversation = t.conversation AND a.anchor = t.id AND a.role = 'assistant'
    WHERE t.conversation = ? AND t.message_id = ? AND t.role = 'user' AND s.done = 0
      AND (a.id IS NULL OR a.delivered = 0)
    LIMIT 1
"""
_SQL_MARK_DELIVERED = "UPDATE turns SET delivered = 1 WHERE id = ? AND conversation = ?"
_SQL_MARK_DONE = "UPDATE seen SET done = 1 WHERE conversation = ? AND message_id = ?"
_SQL_INSERT_TURN = """
    INSERT INTO turns (conversation, role, content, tokens, author_id, author_name,
                       message_id, created_at, reply_to, anchor, delivered)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(?, 0), ?)
    RETURNING id
"""
_SQL_SELF_ANCHOR = "UPDATE turns SET anchor = id WHERE id = ?"
_SQL_CLAIM = "INSERT OR IGNORE INTO seen (conversation, message_id, at) VALUES (?, ?, ?)"
_SQL_PRUNE = "DELETE FROM seen WHERE at < ?"
_SQL_TURN_EXISTS = "SELECT 1 FROM turns WHERE id = ? AND conversation = ?"
_SQL_HAS_TURNS = "SELECT 1 FROM turns WHERE conversation = ? LIMIT 1"
_SQL_RESET = "DELETE FROM turns WHERE conversation = ?"
_SQL_GET_PROMPT = "SELECT system_prompt FROM conversation_settings WHERE conversation = ?"
_SQL_SET_PROMPT = """
    INSERT INTO conversation_settings (conversation, system_prompt) VALUES (?, ?)
    ON CONFLICT (conversation) DO UPDATE SET system_prompt = excluded.system_prompt
"""


class SqliteStore:
    """A :class:`bot.store.Store` in an SQLite file (or ``:memory:``).

    One connection, so one worker thread: statements run in the order they are
    issued. A multi-statement write runs as one function on that thread (see
    ``_run``), so nothing else can land inside its transaction and no lock is
    needed.
    """

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        self._next_prune = 0.0

    async def open(self) -> None:
        """Connect, switch to WAL, and bring the schema up to date."""
        if self._db is not None:
            return
        if self.path != MEMORY_PATH:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit BEGINs; transactions are explicit.
        db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await _configure(db)
            await _migrate(db, self.path)
        except BaseException:
            await db.close()
            raise
        self._db = db
        await self.prune_seen()

    async def close(self) -> None:
        """Wait for a running write, then close; safe to call twice."""
        db, self._db = self._db, None
        if db is not None:
            await db.close()  # queued behind every statement already issued

    async def add_user_turn(self, conversation: str, turn: Turn) -> int | None:
        """Store a user turn unless its message id was seen; durable on return."""
        _check_role(turn, "user")
        await self._maybe_prune()
        return await self._run(_add_user_turn, conversation, turn, self._clock())

    async def add_assistant_turn(self, conversation: str, turn: Turn) -> int | None:
        """Store an answer; it sorts right after ``turn.reply_to``.

        None when that user turn is gone (a reset arrived while the answer was written):
        the answer belongs to the forgotten part of the conversation.
        """
        _check_role(turn, "assistant")
        return await self._run(_add_assistant_turn, conversation, turn)

    async def claim(self, conversation: str, message_id: str) -> bool:
        """Record a message id; True the first time only."""
        await self._maybe_prune()
        cursor = await self._conn().execute(_SQL_CLAIM, (conversation, message_id, self._clock()))
        return cursor.rowcount == 1

    async def recent_turns(self, conversation: str, upto: int, limit: int) -> list[Turn]:
        """The newest ``limit`` turns at or before user turn ``upto``, oldest first."""
        if limit <= 0:  # LIMIT -1 would mean "no limit" to SQLite
            return []
        rows = await self._conn().execute_fetchall(_SQL_RECENT, (conversation, upto, limit))
        turns = [_row_to_turn(row) for row in rows]
        turns.reverse()
        return turns

    async def load_context(self, conversation: str, upto: int, limit: int) -> StoredContext:
        """The conversation's own system prompt and its recent turns: one round trip."""
        prompt, rows = await self._run(_load_context, conversation, upto, limit)
        # Rows become turns here, not on the database thread: Python code there holds
        # the GIL while the event loop waits for it.
        turns = [_row_to_turn(row) for row in rows]
        turns.reverse()
        return StoredContext(prompt, turns)

    async def has_turns(self, conversation: str) -> bool:
        """Whether the conversation has any stored turn."""
        return await self._fetch_one(_SQL_HAS_TURNS, (conversation,)) is not None

    async def pending_turn(self, conversation: str, message_id: str) -> Pending | None:
        """``message_id``'s user turn if a crash cut its answer off (see Store)."""
        row = await self._fetch_one(_SQL_PENDING, (conversation, message_id))
        if row is None:
            return None
        answer = None if row[1] is None else _row_to_turn(row[1:], delivered=False)
        return Pending(int(row[0]), answer)

    async def mark_delivered(self, conversation: str, answer_id: int) -> None:
        """Record that an answer is fully shown."""
        await self._conn().execute(_SQL_MARK_DELIVERED, (answer_id, conversation))

    async def mark_done(self, conversation: str, message_id: str) -> None:
        """Record that ``message_id`` was dealt with although no answer was stored."""
        await self._conn().execute(_SQL_MARK_DONE, (conversation, message_id))

    async def reset(self, conversation: str) -> None:
        """Delete the conversation's turns; dedupe rows and settings stay."""
        await self._conn().execute(_SQL_RESET, (conversation,))

    async def get_system_prompt(self, conversation: str) -> str | None:
        """The conversation's own system prompt, or None."""
        row = await self._fetch_one(_SQL_GET_PROMPT, (conversation,))
        return None if row is None else _opt_str(row[0])

    async def set_system_prompt(self, conversation: str, prompt: str | None) -> None:
        """Set, or with None clear, the conversation's system prompt."""
        await self._conn().execute(_SQL_SET_PROMPT, (conversation, prompt))

    async def prune_seen(self) -> int:
        """Forget dedupe rows older than the retention; return how many."""
        self._next_prune = self._clock() + PRUNE_INTERVAL_S
        cursor = await self._conn().execute(_SQL_PRUNE, (self._clock() - SEEN_RETENTION_S,))
        if cursor.rowcount:
            log.info("storage: pruned %d old dedupe rows", cursor.rowcount)
        return cursor.rowcount

    async def _maybe_prune(self) -> None:
        if self._clock() >= self._next_prune:
            await self.prune_seen()

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(connection, *args)`` on the connection's own thread: one round trip.

        A whole transaction costs one hop to the database thread instead of one per
        statement, and no other statement can run in between, so writers need no
        asyncio lock. If the caller is cancelled, the transaction still completes.
        (aiosqlite's ``_execute`` and ``_conn`` are private: pinned in requirements.)
        """
        db = self._conn()
        return cast(_T, await db._execute(fn, db._conn, *args))  # type: ignore[no-untyped-call]

    async def _fetch_one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        rows = list(await self._conn().execute_fetchall(sql, params))
        return rows[0] if rows else None

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError(f"store {self.path!r} is not open")
        return self._db


async def _configure(db: aiosqlite.Connection) -> None:
    # busy_timeout first, so the journal-mode switch waits for other instances.
    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = await _switch_to_wal(db)
    if mode not in ("wal", "memory"):
        log.warning("storage: journal_mode is %s, not WAL (filesystem without WAL?)", mode)
    await db.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
    await db.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")


async def _switch_to_wal(db: aiosqlite.Connection) -> str:
    """Set WAL mode, retrying while another instance holds the lock.

    SQLite does not call the busy handler for this switch: two instances opening a
    new file at the same moment get "database is locked" at once, so wait here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            rows = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
            return str(rows[0][0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(WAL_SWITCH_RETRY_S)


async def _migrate(db: aiosqlite.Connection, path: str) -> None:
    """Apply the missing migration steps in one transaction.

    BEGIN IMMEDIATE first, then read the version: another instance opening the
    same file at the same moment waits and then finds nothing left to do.
    """
    await db.execute("BEGIN IMMEDIATE")
    try:
        rows = list(await db.execute_fetchall("PRAGMA user_version"))
        version = int(rows[0][0])
        if version > SCHEMA_VERSION:
            raise StartupError(
                f"storage: {path} has schema v{version}, newer than this version of the "
                f"bot understands (v{SCHEMA_VERSION}); upgrade the bot or use another file"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
        await db.execute("COMMIT")
    except BaseException:
        await db.rollback()
        raise
    if version < SCHEMA_VERSION:
        log.info("storage: migrated %s from schema v%d to v%d", path, version, SCHEMA_VERSION)


@contextmanager
def _immediate(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (on the database thread)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.rollback()
        raise
    con.execute("COMMIT")


def _add_user_turn(
    con: sqlite3.Connection, conversation: str, turn: Turn, now: float
) -> int | None:
    with _immediate(con):
        if turn.message_id is not None:
            claimed = con.execute(_SQL_CLAIM, (conversation, turn.message_id, now))
            if claimed.rowcount != 1:
                return None
        turn_id = _insert_turn(con, conversation, turn, anchor=None)
        con.execute(_SQL_SELF_ANCHOR, (turn_id,))
        return turn_id


def _add_assistant_turn(con: sqlite3.Connection, conversation: str, turn: Turn) -> int | None:
    with _immediate(con):
        if turn.reply_to is None:  # not answering anything: sort by arrival
            turn_id = _insert_turn(con, conversation, turn, anchor=None)
            con.execute(_SQL_SELF_ANCHOR, (turn_id,))
            return turn_id
        if con.execute(_SQL_TURN_EXISTS, (turn.reply_to, conversation)).fetchone() is None:
            return None
        return _insert_turn(con, conversation, turn, anchor=turn.reply_to)


def _insert_turn(con: sqlite3.Connection, conversation: str, turn: Turn, anchor: int | None) -> int:
    """Insert a turn and return its id; anchor None means "fix it up to the id"."""
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
    )
    row = con.execute(_SQL_INSERT_TURN, params).fetchone()
    return int(row[0])


def _load_context(
    conn: sqlite3.Connection, conversation: str, upto: int, limit: int
) -> tuple[str | None, list[Any]]:
    prompt = conn.execute(_SQL_GET_PROMPT, (conversation,)).fetchone()
    rows = conn.execute(_SQL_RECENT, (conversation, upto, limit)).fetchall() if limit > 0 else []
    return (None if prompt is None else _opt_str(prompt[0])), rows


def _row_to_turn(row: Iterable[Any], delivered: bool = True) -> Turn:
    turn_id, role, content, tokens, author_id, author_name, message_id, created_at, reply_to = row
    return Turn(
        role="assistant" if role == "assistant" else "user",  # CHECK allows only these
        content=content,
        tokens=tokens,
        author_id=author_id,
        author_name=author_name,
        message_id=message_id,
        created_at=created_at,
        id=turn_id,
        reply_to=reply_to,
        delivered=delivered,
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _check_role(turn: Turn, role: str) -> None:
    if turn.role != role:
        raise ValueError(f"expected a {role} turn, got {turn.role!r}")
