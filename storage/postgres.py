"""The PostgreSQL store: the SQLite store's semantics, shared by several instances.

asyncpg (binary protocol, its own C parser, no libpq) over a pool of at most
``storage.pool_size`` connections. Every operation a message makes is one
statement, so one round trip and atomic without a client-side transaction
(storage/postgres_sql.py): the dedupe is ``INSERT ... ON CONFLICT DO NOTHING
RETURNING``, ``take_over`` one conditional UPDATE.

No turn cache here (storage/turn_cache.py is SQLite's): other instances write the
same conversations, and PostgreSQL has no cheap per-connection count of other
sessions' commits like SQLite's ``data_version`` to tell a held history is stale.
LISTEN/NOTIFY arrives after the commit, so a read in between would still be served
stale. A load is one indexed round trip; the core's own memo covers the rest.

Driver errors never reach bot/ as such: each call turns them into
:class:`bot.errors.StoreFailure`, which the core handles like ``sqlite3.Error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import asyncpg

from bot.errors import ConfigError, StartupError, StoreFailure
from bot.failure_log import FailureLog
from bot.instances import (
    FORGET_AFTER_S,
    HEARTBEAT_S,
    STALE_AFTER_S,
    new_instance_id,
    process_gone,
    process_identity,
)
from bot.redact import redact_text, redact_url
from bot.store import Origin, Pending, StoredContext, Unanswered
from bot.types import Media, Turn
from bot.usage import UsageQuery, UsageRecord, UsageTotals

from . import media_rows, usage_sql
from . import postgres_sql as sql
from .migrations import SEEN_RETENTION_S
from .pruning import PRUNE_BATCH, PruneSchedule, delete_in_batches
from .sqlite_ops import check_role, opt_str, row_to_turn

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 10
CONNECT_TIMEOUT_S = 10.0  # a server that does not answer at start: one line, exit 2
# A statement the server does not finish in this long fails (StoreFailure) instead
# of holding its message, and a pooled connection, forever.
COMMAND_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0  # then the pool's connections are cut
DAY_S = 24 * 3600.0
NUL_SHOWN_AS = "\ufffd"  # PostgreSQL's TEXT cannot hold NUL (see _text)
CONFIG_KEY = "storage.url"  # bot/startup.py adds DATABASE_URL when that set it
# What the driver raises for a failed call: server errors, a lost or unusable
# connection, the socket, a statement past COMMAND_TIMEOUT_S. InternalClientError:
# asyncpg's protocol state after the server dropped an idle connection (seen in
# tests/test_postgres.py when the server terminates the session).
DRIVER_FAILURES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
_RECORD = usage_sql.numbered(usage_sql.SQL_RECORD)
_TOTALS = usage_sql.numbered(usage_sql.SQL_TOTALS)
_TOP = usage_sql.numbered(usage_sql.SQL_TOP)
_FORGET_ANSWERS = usage_sql.numbered(usage_sql.SQL_FORGET_ANSWERS)
_FORGET_TURNS = usage_sql.numbered(usage_sql.SQL_FORGET_TURNS)
# asyncio and uvloop word a refused connection differently; check and a start
# (which use one each) show the same line.
REFUSED = "connection refused: no server listens at that host and port"
# An InternalClientError is what asyncpg raises for a call on a connection the
# server just terminated ("cannot switch to state 12; another operation (2) is in
# progress"): it names the driver's state, not what happened.
LOST = "the connection to the server was lost (the server closed it)"
# At connect, a URL asyncpg cannot parse (a bad port) is a ValueError, a port past
# 65535 an OverflowError from the socket (storage/problems.py refuses both first).
OPEN_FAILURES: tuple[type[BaseException], ...] = (*DRIVER_FAILURES, ValueError, OverflowError)


class PostgresStore:
    """A :class:`bot.store.Store` in a PostgreSQL database (the URL's schema)."""

    # Several instances share it: they answer through bot/handoff.py's leases.
    shared = True

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        pool_size: int = DEFAULT_POOL_SIZE,
        retention_days: float = 0.0,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.url = url
        self._clock = clock
        self._pool_size = pool_size
        self._retention_s = retention_days * DAY_S  # 0: keep turns forever
        self._heartbeat_s = heartbeat_s
        self._pool: Any = None  # asyncpg.Pool once open
        self._prunes = PruneSchedule(clock, self._prune)
        self._heartbeat: asyncio.Task[None] | None = None
        self.instance_id = new_instance_id()
        self._host, self._pid = process_identity()

    async def open(self) -> None:
        """Connect, migrate under an advisory lock, register this instance.

        A server that cannot be reached or refuses the login raises a ConfigError
        naming storage.url, with the URL's password hidden."""
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._pool_size,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                reset=_nothing_to_reset,
            )
        except OPEN_FAILURES as exc:
            raise unusable(self.url, exc, no_answer_to_connect(CONNECT_TIMEOUT_S)) from None
        self._pool = pool
        try:
            await _migrate(pool, redact_url(self.url))
            await self._execute(sql.SQL_FORGET_INSTANCES, self._clock() - FORGET_AFTER_S)
            await self._forget_gone_processes()
            await self._beat()
        except BaseException as exc:
            self._pool = None
            pool.terminate()
            if isinstance(exc, (*DRIVER_FAILURES, StoreFailure)):
                raise unusable(self.url, exc) from None
            raise
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat_forever())
        self._prunes.maybe_start()  # at once (storage/pruning.py)

    async def close(self) -> None:
        """Stop pruning and beating, remove the instance row, close the pool; safe twice."""
        await self._prunes.stop()
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            try:
                await self._execute(sql.SQL_UNREGISTER, self.instance_id)
            except StoreFailure as exc:  # it goes stale instead
                log.debug("storage: could not remove instance %s: %s", self.instance_id, exc)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
            except TimeoutError:
                pool.terminate()

    async def add_user_turn(
        self, conversation: str, turn: Turn, origin: Origin | None = None
    ) -> int | None:
        """Store a user turn unless its message id was seen; committed on return."""
        check_role(turn, "user")
        self._prunes.maybe_start()
        target, is_dm = (None, False) if origin is None else (origin.reply_target, origin.is_dm)
        row = await self._fetchrow(
            sql.SQL_ADD_USER,
            *_turn_params(conversation, turn),
            self._clock(),
            self.instance_id,
            target,
            is_dm,
        )
        return None if row is None else int(row["id"])

    async def add_assistant_turn(self, conversation: str, turn: Turn) -> int | None:
        """Store an answer right after ``turn.reply_to``; None if that turn is gone."""
        check_role(turn, "assistant")
        params = _turn_params(conversation, turn)
        tools = _text(turn.tools)
        if turn.reply_to is None:
            row = await self._fetchrow(sql.SQL_ADD_ANSWER_ALONE, *params, tools)
        else:
            row = await self._fetchrow(sql.SQL_ADD_ANSWER, *params, turn.reply_to, tools)
        return None if row is None else int(row["id"])

    async def claim(self, conversation: str, message_id: str) -> bool:
        """Record a message id; True the first time only."""
        self._prunes.maybe_start()
        row = await self._fetchrow(sql.SQL_CLAIM, conversation, message_id, self._clock())
        return row is not None

    async def recent_turns(self, conversation: str, upto: int, limit: int) -> list[Turn]:
        """The newest ``limit`` turns at or before user turn ``upto``, oldest first."""
        if limit <= 0:
            return []
        return (await self.load_context(conversation, upto, limit)).turns

    async def load_context(self, conversation: str, upto: int, limit: int) -> StoredContext:
        """The conversation's own system prompt and its recent turns, in one round trip."""
        rows = await self._fetch(sql.SQL_LOAD_CONTEXT, conversation, upto, max(limit, 0))
        prompt = opt_str(rows[0][0]) if rows else None
        has_media = bool(rows[0][1]) if rows else True
        turns = [row_to_turn(tuple(row)[2:]) for row in reversed(rows) if row["id"] is not None]
        return StoredContext(prompt, turns, has_media)

    async def has_turns(self, conversation: str) -> bool:
        """Whether the conversation has any stored turn."""
        return await self._fetchrow(sql.SQL_HAS_TURNS, conversation) is not None

    async def seen(self, conversation: str, message_id: str) -> bool:
        """Whether ``message_id`` was stored (or claimed) before: read only."""
        return await self._fetchrow(sql.SQL_SEEN, conversation, message_id) is not None

    async def pending_turn(self, conversation: str, message_id: str) -> Pending | None:
        """``message_id``'s user turn if a crash cut its answer off (see Store)."""
        row = await self._fetchrow(sql.SQL_PENDING, conversation, message_id)
        if row is None:
            return None
        values = tuple(row)
        answer = None if values[1] is None else row_to_turn(values[1:], delivered=False)
        return Pending(int(values[0]), answer)

    async def mark_delivered(self, conversation: str, answer_id: int) -> None:
        """Record that an answer is fully shown."""
        await self._execute(sql.SQL_MARK_DELIVERED, answer_id, conversation)

    async def mark_done(self, conversation: str, message_id: str) -> None:
        """Record that ``message_id`` was dealt with although no answer was stored."""
        await self._execute(sql.SQL_MARK_DONE, conversation, message_id)

    async def unanswered(self, since: float, limit: int) -> list[Unanswered]:
        """Cut-off user turns stored since ``since``, oldest first."""
        rows = await self._fetch(sql.SQL_UNANSWERED, since, limit)
        return [
            Unanswered(str(row[0]), row_to_turn(tuple(row)[3:]), Origin(row[1], bool(row[2])))
            for row in rows
        ]

    async def abandon_unanswered(
        self, since: float, before: float, limit: int
    ) -> list[tuple[str, str]]:
        """Mark done the cut-off user turns in [since, before) no live instance holds."""
        alive_after = self._clock() - STALE_AFTER_S
        rows = await self._fetch(
            sql.SQL_ABANDON, self.instance_id, alive_after, since, before, limit
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    async def take_over(self, conversation: str, message_id: str) -> bool:
        """Own ``message_id`` unless a live instance does (one conditional UPDATE)."""
        alive_after = self._clock() - STALE_AFTER_S
        status = await self._execute(
            sql.SQL_TAKE_OVER, self.instance_id, alive_after, conversation, message_id
        )
        return _rowcount(status) == 1

    # -- several instances (bot/coordination.py) --

    async def take_lease(self, conversation: str, stale_s: float) -> bool:
        """Hold ``conversation`` unless another live instance does (one UPSERT)."""
        now = self._clock()
        status = await self._execute(
            sql.SQL_TAKE_LEASE, conversation, self.instance_id, now, now - stale_s
        )
        return _rowcount(status) == 1

    async def release_lease(self, conversation: str) -> None:
        """Give ``conversation`` up if this instance holds it."""
        await self._execute(sql.SQL_RELEASE_LEASE, conversation, self.instance_id)

    async def waiting_turns(self, conversation: str, since: float, limit: int) -> list[Unanswered]:
        """The conversation's unanswered user turns stored since ``since``, in order."""
        rows = await self._fetch(sql.SQL_WAITING_TURNS, conversation, since, limit)
        return [
            Unanswered(str(row[0]), row_to_turn(tuple(row)[3:]), Origin(row[1], bool(row[2])))
            for row in rows
        ]

    async def orphaned(self, since: float, stale_s: float, limit: int) -> list[str]:
        """Conversations with waiting turns that no live instance holds."""
        rows = await self._fetch(sql.SQL_ORPHANED, since, self._clock() - stale_s, limit)
        return [str(row[0]) for row in rows]

    async def alive_instances(self, stale_s: float) -> int:
        """Instances whose heartbeat is younger than ``stale_s``."""
        return int((await self._fetchrow(sql.SQL_ALIVE, self._clock() - stale_s))[0])

    async def count_message(self, person: str, minute: int) -> int:
        """One more message of ``person`` in ``minute``; their count in it."""
        return int((await self._fetchrow(sql.SQL_COUNT_MESSAGE, person, minute))[0])

    async def uncount_message(self, person: str, minute: int) -> None:
        """Take one message of ``person`` in ``minute`` back."""
        await self._execute(sql.SQL_UNCOUNT_MESSAGE, person, minute)

    async def reset(self, conversation: str) -> None:
        """Delete the conversation's turns; dedupe rows and settings stay."""
        with self._translated():
            async with self._open_pool().acquire() as con, con.transaction():
                await con.execute(sql.SQL_RESET, conversation)
                await con.execute(sql.SQL_RESET, conversation)  # answers that were in flight
                await con.execute(sql.SQL_RESET_MEDIA, conversation)

    async def add_media(
        self, conversation: str, turn_id: int, media: Sequence[Media], image_budget: int
    ) -> None:
        """Keep an attachment's content; the oldest images go past ``image_budget``."""
        rows = media_rows.to_rows(conversation, turn_id, media, self._clock())
        with self._translated():
            async with self._open_pool().acquire() as con, con.transaction():
                await con.executemany(sql.SQL_ADD_MEDIA, rows)
                await con.execute(sql.SQL_TRIM_IMAGES, conversation, image_budget)

    async def media_for(self, conversation: str, first: int, last: int) -> dict[int, list[Media]]:
        """The media of user turns ``first``..``last``, by turn id."""
        with self._translated():
            async with self._open_pool().acquire() as con:
                rows = await con.fetch(sql.SQL_MEDIA_FOR, conversation, first, last)
        return media_rows.by_turn(rows)

    async def get_model(self, conversation: str) -> str | None:
        """The model the conversation picked (``!model``), or None."""
        row = await self._fetchrow(sql.SQL_GET_MODEL, conversation)
        return None if row is None else opt_str(row[0])

    async def set_model(self, conversation: str, model: str | None) -> None:
        """Pick, or with None forget, the conversation's model."""
        await self._execute(sql.SQL_SET_MODEL, conversation, model)

    async def get_system_prompt(self, conversation: str) -> str | None:
        """The conversation's own system prompt, or None."""
        row = await self._fetchrow(sql.SQL_GET_PROMPT, conversation)
        return None if row is None else opt_str(row[0])

    async def set_system_prompt(self, conversation: str, prompt: str | None) -> None:
        """Set, or with None clear, the conversation's system prompt."""
        await self._execute(sql.SQL_SET_PROMPT, conversation, prompt)

    # -- the usage ledger (bot/usage.py, storage/usage_sql.py) --

    async def record_usage(self, records: Sequence[UsageRecord]) -> None:
        """Add each record to its day's row (asyncpg's executemany: one transaction)."""
        rows = [usage_sql.record_params(record) for record in records]
        if rows:
            with self._translated():
                await self._open_pool().executemany(_RECORD, rows)

    async def usage_totals(self, query: UsageQuery) -> UsageTotals:
        """Sums over the rows ``query`` picks."""
        row = await self._fetchrow(_TOTALS, *usage_sql.query_params(query))
        return usage_sql.totals_of(tuple(row))

    async def top_users(self, query: UsageQuery, limit: int) -> list[tuple[str, UsageTotals]]:
        """The persons with the most tokens among the rows ``query`` picks."""
        rows = await self._fetch(_TOP, *usage_sql.query_params(query), limit)
        return [(str(row[0]), usage_sql.totals_of(tuple(row)[1:])) for row in rows]

    async def forget_person(self, conversation_prefix: str, person: str) -> int:
        """Delete a person's turns and the answers to them in one workspace, in one
        transaction; how many of theirs."""
        params = usage_sql.forget_params(conversation_prefix, person)
        with self._translated():
            async with self._open_pool().acquire() as con, con.transaction():
                await con.execute(_FORGET_ANSWERS, *params)
                return _rowcount(await con.execute(_FORGET_TURNS, *params))

    async def prune_seen(self) -> int:
        """Forget dedupe rows older than the retention; how many."""
        self._prunes.postpone()
        status = await self._execute(sql.SQL_PRUNE_SEEN, self._clock() - SEEN_RETENTION_S)
        pruned = _rowcount(status)
        if pruned:
            log.info("storage: pruned %d old dedupe rows", pruned)
        return pruned

    async def prune_turns(self) -> int:
        """Delete turns older than ``retention_days`` in batches (none with 0); how many."""
        if not self._retention_s:
            return 0
        cutoff = self._clock() - self._retention_s

        async def delete_batch() -> int:
            return _rowcount(await self._execute(sql.SQL_PRUNE_TURNS, cutoff, PRUNE_BATCH))

        deleted = await delete_in_batches(delete_batch)
        await self._execute(sql.SQL_PRUNE_MEDIA, cutoff)
        return deleted

    async def _prune(self) -> None:
        await self.prune_seen()
        await self.prune_turns()
        minute = int(self._clock() // 60) - 1  # per-person counts of older minutes
        await self._execute(sql.SQL_PRUNE_COUNTS, minute)

    async def _beat(self) -> None:
        await self._execute(sql.SQL_BEAT, self.instance_id, self._clock(), self._host, self._pid)

    async def _beat_forever(self) -> None:
        """Beat on a connection of its own: under load every pooled connection may be
        busy for seconds, and a beat queued behind them would make this instance look
        dead to the others (bot/handoff.py would take its conversations)."""
        con: Any = None
        failures = FailureLog(log, "storage: heartbeat failed")
        try:
            while True:
                await asyncio.sleep(self._heartbeat_s)
                try:
                    with self._translated(no_answer_to_connect(CONNECT_TIMEOUT_S)):
                        if con is None or con.is_closed():
                            con = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
                    with self._translated(no_answer_to_statement(self._heartbeat_s)):
                        beat = (self.instance_id, self._clock(), self._host, self._pid)
                        await con.execute(sql.SQL_BEAT, *beat, timeout=self._heartbeat_s)
                except StoreFailure as exc:  # the next beat tries again
                    failures.failed(exc)
                    _dropped(con)
                    con = None
                else:
                    failures.succeeded()
        finally:
            _dropped(con)

    async def _forget_gone_processes(self) -> None:
        """Delete the rows of instances whose process is gone from this machine."""
        if self._host is None:
            return
        for row in await self._fetch(sql.SQL_LOCAL_INSTANCES, self._host, self.instance_id):
            instance, pid = str(row[0]), row[1]
            if pid is not None and process_gone(int(pid)):
                log.info("storage: instance %s (pid %d) is gone; taking over its work", *row)
                await self._execute(sql.SQL_UNREGISTER, instance)

    def _open_pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError(f"store {redact_url(self.url)!r} is not open")
        return self._pool

    @contextlib.contextmanager
    def _translated(self, timed_out: str | None = None) -> Iterator[None]:
        """The driver's failures as StoreFailure, a type bot/ knows, in one line;
        ``timed_out`` says what a timeout means (default: a statement's)."""
        try:
            yield
        except DRIVER_FAILURES as exc:
            raise StoreFailure(f"PostgreSQL: {failure_text(exc, timed_out)}") from exc

    async def _fetch(self, statement: str, *args: object) -> list[Any]:
        with self._translated():
            return list(await self._open_pool().fetch(statement, *args))

    async def _fetchrow(self, statement: str, *args: object) -> Any:
        with self._translated():
            return await self._open_pool().fetchrow(statement, *args)

    async def _execute(self, statement: str, *args: object) -> str:
        with self._translated():
            return str(await self._open_pool().execute(statement, *args))


def unusable(url: str, exc: BaseException, timed_out: str | None = None) -> ConfigError:
    """The error for a database that cannot be used at start (or read by ``check``),
    naming storage.url with the URL's password hidden."""
    if isinstance(exc, StoreFailure) and exc.__cause__ is not None:
        exc = exc.__cause__  # its text already says "PostgreSQL: "
    reason = failure_text(exc, timed_out)
    return ConfigError(CONFIG_KEY, f"cannot use PostgreSQL at {redact_url(url)!r}: {reason}")


def failure_text(exc: BaseException, timed_out: str | None = None) -> str:
    """One line for a driver failure: PostgreSQL's own first line (its DETAIL and HINT
    lines may quote a stored row), or words for failures whose text says nothing."""
    if isinstance(exc, TimeoutError):  # its text is empty
        return timed_out or no_answer_to_statement(COMMAND_TIMEOUT_S)
    if isinstance(exc, ConnectionRefusedError):
        return REFUSED
    if isinstance(exc, asyncpg.InternalClientError):
        return LOST
    lines = redact_text(str(exc)).splitlines()
    return lines[0] if lines else type(exc).__name__


def no_answer_to_connect(waited_s: float) -> str:
    """What a connection attempt that timed out is shown as."""
    return f"the server did not answer within {waited_s:g} s"


def no_answer_to_statement(waited_s: float) -> str:
    """What a statement that timed out is shown as."""
    return (
        f"a statement got no answer within {waited_s:g} s "
        "(a lock held by another session, or a server that stopped answering)"
    )


def _dropped(con: Any) -> None:
    """Close a connection at once (it failed, or its task ends)."""
    if con is not None:
        con.terminate()


def _text(value: str | None) -> str | None:
    """``value`` as PostgreSQL's TEXT can hold it: it refuses NUL, which SQLite keeps
    and a model's answer may contain; it is shown as U+FFFD instead of losing the turn."""
    return None if value is None else value.replace("\x00", NUL_SHOWN_AS)


def _turn_params(conversation: str, turn: Turn) -> tuple[object, ...]:
    """$1..$9 of the insert statements."""
    return (
        conversation,
        turn.role,
        _text(turn.content),
        turn.tokens,
        _text(turn.author_id),
        _text(turn.author_name),
        turn.message_id,
        turn.created_at,
        turn.delivered,
    )


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 1`` or ``DELETE 500``."""
    return int(status.rsplit(" ", 1)[-1])


async def _migrate(pool: Any, shown: str) -> None:
    """Apply the missing steps in one transaction, under a transaction-level
    advisory lock: instances starting at once wait, then find nothing to do."""
    async with pool.acquire() as con, con.transaction():
        await con.execute(sql.SQL_LOCK, sql.MIGRATION_LOCK)
        await con.execute(sql.SQL_VERSION_TABLE)
        version = int(await con.fetchval(sql.SQL_CURRENT_VERSION))
        if version > sql.SCHEMA_VERSION:
            raise StartupError(
                f"storage: {shown} has schema v{version}, newer than this version of the "
                f"bot understands (v{sql.SCHEMA_VERSION}); upgrade the bot or use another "
                "database"
            )
        for number in range(version + 1, sql.SCHEMA_VERSION + 1):
            for statement in sql.MIGRATIONS[number - 1]:
                await con.execute(statement)
            await con.execute(sql.SQL_RECORD_VERSION, number)
        for statement in sql.SQL_CATCH_UP_SEQUENCES:
            await con.execute(statement)
    if version < sql.SCHEMA_VERSION:
        log.info("storage: migrated %s from schema v%d to v%d", shown, version, sql.SCHEMA_VERSION)


async def _nothing_to_reset(con: asyncpg.Connection) -> None:
    """The pool's reset of a released connection: nothing, as the store keeps no
    session state (no LISTEN, cursors, SET or session-level advisory locks; the
    migration lock is transaction-scoped). asyncpg's default sends a reset query,
    one more round trip per store call; an open transaction it still rolls back
    itself."""
