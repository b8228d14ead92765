"""The SQLite store: history, settings and durable dedupe in one file.

Reads run on the event loop's thread. Each is short, and on another thread it
would cost more than it takes: the sqlite3 module hands the GIL back and
forth for every row, and under load each hand-over waits for the busy event loop
(PERFORMANCE.md, "SQLite reads run on the event loop's thread"). A read cannot
wait on the disk for long: in WAL mode it never waits for a writer (not even one
stuck in write() or fsync), and the pages it needs are in the OS page cache or the
memory map.

Writes run on the writer, on a connection of its own, because a write can wait on
the disk: a stalled or frozen file system (``fsfreeze``) held a write on the event
loop's thread for seconds and every conversation with it. For a database file the
writer is a child process (storage/sqlite_writer_process.py: a thread would share
the GIL with the loop, which costs every answer); for ``:memory:`` a thread
(storage/sqlite_writer.py). Only the coroutine that awaits the write waits;
``add_user_turn`` still returns after its commit. The writer commits every write
queued since its last wake-up together. It also opens and migrates, checkpoints the
WAL (fsync), prunes, and waits up to ``BUSY_TIMEOUT_MS`` for a file locked by
another connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bot.errors import StartupError
from bot.failure_log import FailureLog
from bot.instances import (
    FORGET_AFTER_S,
    HEARTBEAT_S,
    STALE_AFTER_S,
    new_instance_id,
    process_gone,
    process_identity,
)
from bot.store import Origin, Pending, StoredContext, Unanswered
from bot.types import Media, Turn
from bot.usage import UsageQuery, UsageRecord, UsageTotals

from . import media_rows, problems, usage_sql
from . import sqlite_ops as ops
from . import sqlite_shared as shared
from .migrations import MIGRATIONS, SCHEMA_VERSION, SEEN_RETENTION_S
from .pruning import PRUNE_BATCH, PruneSchedule, delete_in_batches
from .sqlite_writer import SqliteWriter, Writer
from .sqlite_writer_process import ProcessWriter
from .turn_cache import MAX_BYTES, TurnCache

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
DAY_S = 24 * 3600.0
# SQLite would checkpoint inside the commit that fills 1000 pages of WAL (two fsyncs
# that the commit's caller waits for). Both connections turn that off; instead the
# writer checkpoints at most this often after writes (tests/test_storage.py,
# test_sqlite_commits_never_checkpoint_on_their_own).
CHECKPOINT_INTERVAL_S = 1.0
# Set on the writer's connection and the event loop's alike.
BOTH_CONNECTIONS = (
    f"synchronous = {SYNCHRONOUS}",
    f"mmap_size = {MMAP_BYTES}",
    "wal_autocheckpoint = 0",  # see CHECKPOINT_INTERVAL_S
)
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
# Writes of a database file run in a child process (storage/sqlite_writer_process.py),
# where the platform has fork/exec pipes the event loop can watch; else on a thread.
WRITER_PROCESS = os.name == "posix"


class SqliteStore:
    """A :class:`bot.store.Store` in an SQLite file (or ``:memory:``).

    Two connections: ``_inline`` on the event loop's thread for the statements of
    every message, ``_worker`` (the writer's) for what may wait (module docstring).
    A multi-statement write is one function of ``storage.sqlite_ops`` run in one
    go, so nothing else can land inside its transaction and no lock is needed.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
        turn_cache: TurnCache | None = None,
        cache_bytes: int = MAX_BYTES,
        retention_days: float = 0.0,
        on_connect: Callable[[sqlite3.Connection], object] | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.path = path
        self._clock = clock
        self._checkpoint_interval_s = checkpoint_interval_s
        self._retention_s = retention_days * DAY_S  # 0: keep turns forever
        self._on_connect = on_connect  # called with each connection (tests, benchmarks)
        self._worker: Writer | None = None
        self._inline: sqlite3.Connection | None = None
        self._next_checkpoint = 0.0
        self._checkpoint: asyncio.Task[None] | None = None
        self._checkpoint_failures = FailureLog(log, "storage: WAL checkpoint failed")
        self._prunes = PruneSchedule(clock, self._prune)
        self._cache = TurnCache(max_bytes=cache_bytes) if turn_cache is None else turn_cache
        self._data_version = -1  # the inline connection's, as of the cache's last use
        self._worker_version = -1  # the worker's, as of its last write
        self._writing = 0  # writes handed to the worker and not finished
        self._cache = TurnCache() if turn_cache is None else turn_cache
        self._data_version = -1  # as of the cache's last use; -1: unknown
        self.instance_id = new_instance_id()  # this process's name in ``instances``
        self._heartbeat: asyncio.Task[None] | None = None
        self._heartbeat_s = heartbeat_s
        self._host, self._pid = process_identity()

    async def open(self) -> None:
        """Connect, switch to WAL, bring the schema up to date, open the inline connection.

        A file that cannot be used (a directory, a damaged file, a folder that cannot
        be created) raises a ConfigError naming ``storage.url`` (storage/problems.py).
        """
        if self._worker is not None:
            return
        try:
            await self._open()
        except (OSError, sqlite3.Error) as exc:
            raise problems.describe(self.path, exc) from None

    async def _open(self) -> None:
        target, uri = self.path, False
        if self.path == MEMORY_PATH:  # both connections must see one database
            target, uri = f"file:chatbridge-{uuid.uuid4().hex}?mode=memory&cache=shared", True
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # A file SQLite cannot open fails here, before the writer starts.
        # isolation_level=None: no implicit BEGINs; transactions are explicit.
        con = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)
        worker: Writer
        if uri or not WRITER_PROCESS:  # an in-memory database lives in this process
            worker = SqliteWriter(con)
        else:
            con.close()
            worker = ProcessWriter(target)
        try:
            await worker.run(_configure, self.path)
            self._inline = _inline_connection(target, uri)
        except BaseException:
            await worker.close()
            raise
        self._worker = worker
        if self._on_connect is not None:
            self._on_connect(self._inline)
            await self._in_worker(self._on_connect)
        self._worker_version = await self._in_worker(ops.data_version)
        await self._in_worker(
            ops.execute, ops.SQL_FORGET_INSTANCES, (self._clock() - FORGET_AFTER_S,)
        )
        await self._forget_gone_processes()
        await self._beat()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat_forever())
        self._prunes.maybe_start()  # at once (storage/pruning.py)

    async def close(self) -> None:
        """Finish a running checkpoint or write, then close; safe to call twice.

        The instance row goes too: what this store owned is free at once."""
        await self._prunes.stop()
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            try:
                await self._in_worker(ops.execute, ops.SQL_UNREGISTER, (self.instance_id,))
            except sqlite3.Error as exc:  # it goes stale instead; the failure was reported
                log.debug("storage: could not remove instance %s: %s", self.instance_id, exc)
        if self._checkpoint is not None:
            await self._checkpoint
        self._cache.clear()
        inline, self._inline = self._inline, None
        worker, self._worker = self._worker, None
        if inline is not None:
            inline.close()
        if worker is not None:
            await worker.close()  # the last to close: SQLite checkpoints in the writer

    async def add_user_turn(
        self, conversation: str, turn: Turn, origin: Origin | None = None
    ) -> int | None:
        """Store a user turn unless its message id was seen; durable on return."""
        ops.check_role(turn, "user")
        self._prunes.maybe_start()
        target, is_dm = (None, False) if origin is None else (origin.reply_target, origin.is_dm)
        stored = await self._write(
            ops.add_user_turn, conversation, turn, self._clock(), self.instance_id, target, is_dm
        )
        return self._added(conversation, stored, turn.delivered)

    async def add_assistant_turn(self, conversation: str, turn: Turn) -> int | None:
        """Store an answer; it sorts right after ``turn.reply_to``.

        None when that user turn is gone (a reset arrived while the answer was written):
        the answer belongs to the forgotten part of the conversation.
        """
        ops.check_role(turn, "assistant")
        stored = await self._write(ops.add_assistant_turn, conversation, turn)
        return self._added(conversation, stored, turn.delivered)

    def _added(self, conversation: str, stored: ops.Stored, delivered: bool) -> int | None:
        if stored is None:
            return None
        anchor, row = stored
        turn = ops.row_to_turn(row, delivered)
        self._cache.added(conversation, anchor, turn)
        return turn.id

    async def claim(self, conversation: str, message_id: str) -> bool:
        """Record a message id; True the first time only."""
        self._prunes.maybe_start()
        params = (conversation, message_id, self._clock())
        return await self._write(ops.execute, ops.SQL_CLAIM, params) == 1

    async def recent_turns(self, conversation: str, upto: int, limit: int) -> list[Turn]:
        """The newest ``limit`` turns at or before user turn ``upto``, oldest first."""
        if limit <= 0:
            return []
        return (await self.load_context(conversation, upto, limit)).turns

    async def load_context(self, conversation: str, upto: int, limit: int) -> StoredContext:
        """The conversation's own system prompt and its recent turns: one trip, and
        none when the turn cache holds them."""
        if limit <= 0:  # LIMIT -1 would mean "no limit" to SQLite
            return StoredContext(await self.get_system_prompt(conversation), [])
        cache = self._cache
        version = self._data_version_now()
        # A change while a write of ours is under way may be that write: the writes
        # judge it (see _write).
        if version < 0 or (version != self._data_version and not self._writing):
            cache.clear()  # another connection wrote, or it cannot be told
            self._data_version = version
        held = cache.get(conversation, upto, limit)
        if held is None and limit <= cache.per_conversation:
            prompt, rows = await self._run(ops.load_newest, conversation, cache.per_conversation)
            newest = [(row[0], ops.row_to_turn(row[1:])) for row in rows]
            held = cache.fill(conversation, prompt, newest, upto, limit)
        if held is not None:
            return StoredContext(*held)
        prompt, rows = await self._run(ops.load_context, conversation, upto, limit)
        return StoredContext(prompt, [ops.row_to_turn(row) for row in reversed(rows)])

    async def has_turns(self, conversation: str) -> bool:
        """Whether the conversation has any stored turn."""
        row = await self._run(ops.fetch_one, ops.SQL_HAS_TURNS, (conversation,))
        return row is not None

    async def seen(self, conversation: str, message_id: str) -> bool:
        """Whether ``message_id`` was stored (or claimed) before: read only."""
        row = await self._run(ops.fetch_one, ops.SQL_SEEN, (conversation, message_id))
        return row is not None

    async def pending_turn(self, conversation: str, message_id: str) -> Pending | None:
        """``message_id``'s user turn if a crash cut its answer off (see Store)."""
        row = await self._run(ops.fetch_one, ops.SQL_PENDING, (conversation, message_id))
        if row is None:
            return None
        answer = None if row[1] is None else ops.row_to_turn(row[1:], delivered=False)
        return Pending(int(row[0]), answer)

    async def mark_delivered(self, conversation: str, answer_id: int) -> None:
        """Record that an answer is fully shown."""
        await self._write(ops.execute, ops.SQL_MARK_DELIVERED, (answer_id, conversation))
        self._cache.delivered(conversation, answer_id)

    async def mark_done(self, conversation: str, message_id: str) -> None:
        """Record that ``message_id`` was dealt with although no answer was stored."""
        await self._write(ops.execute, ops.SQL_MARK_DONE, (conversation, message_id))

    async def unanswered(self, since: float, limit: int) -> list[Unanswered]:
        """Cut-off user turns stored since ``since`` (on the writer: it scans)."""
        rows = await self._in_worker(ops.fetch_all, ops.SQL_UNANSWERED, (since, math.inf, limit))
        return [
            Unanswered(str(row[0]), ops.row_to_turn(row[3:]), Origin(row[1], bool(row[2])))
            for row in rows
        ]

    async def abandon_unanswered(
        self, since: float, before: float, limit: int
    ) -> list[tuple[str, str]]:
        """Mark done the cut-off user turns in [since, before) no live instance holds."""
        alive_after = self._clock() - STALE_AFTER_S
        return await self._in_worker(
            ops.abandon, (since, before), self.instance_id, alive_after, limit
        )

    async def take_over(self, conversation: str, message_id: str) -> bool:
        """Own ``message_id`` unless a live instance does (one conditional UPDATE)."""
        me = self.instance_id
        params = (me, conversation, message_id, me, self._clock() - STALE_AFTER_S)
        return await self._write(ops.execute, ops.SQL_TAKE_OVER, params) == 1

    # -- several instances (bot/coordination.py) --

    async def take_lease(self, conversation: str, stale_s: float) -> bool:
        """Hold ``conversation`` unless another live instance does (one UPSERT)."""
        now = self._clock()
        params = (conversation, self.instance_id, now, now - stale_s)
        return await self._write(ops.execute, shared.SQL_TAKE_LEASE, params) == 1

    async def release_lease(self, conversation: str) -> None:
        """Give ``conversation`` up if this instance holds it."""
        params = (conversation, self.instance_id)
        await self._write(ops.execute, shared.SQL_RELEASE_LEASE, params)

    async def waiting_turns(self, conversation: str, since: float, limit: int) -> list[Unanswered]:
        """The conversation's unanswered user turns stored since ``since``, in order."""
        params = (conversation, since, limit)
        rows = await self._run(ops.fetch_all, shared.SQL_WAITING_TURNS, params)
        return [
            Unanswered(str(row[0]), ops.row_to_turn(row[3:]), Origin(row[1], bool(row[2])))
            for row in rows
        ]

    async def orphaned(self, since: float, stale_s: float, limit: int) -> list[str]:
        """Conversations with waiting turns that no live instance holds."""
        params = (since, self._clock() - stale_s, limit)
        rows = await self._in_worker(ops.fetch_all, shared.SQL_ORPHANED, params)
        return [str(row[0]) for row in rows]

    async def alive_instances(self, stale_s: float) -> int:
        """Instances whose heartbeat is younger than ``stale_s``."""
        params = (self._clock() - stale_s,)
        return int((await self._run(ops.fetch_one, shared.SQL_ALIVE, params))[0])

    async def count_message(self, person: str, minute: int) -> int:
        """One more message of ``person`` in ``minute``; their count in it."""
        rows = await self._write(ops.fetch_all, shared.SQL_COUNT_MESSAGE, (person, minute))
        return int(rows[0][0])

    async def uncount_message(self, person: str, minute: int) -> None:
        """Take one message of ``person`` in ``minute`` back."""
        await self._write(ops.execute, shared.SQL_UNCOUNT_MESSAGE, (person, minute))

    async def _beat(self) -> None:
        """Stamp this instance's heartbeat (bot/instances.py)."""
        params = (self.instance_id, self._clock(), self._host, self._pid)
        await self._write(ops.execute, ops.SQL_BEAT, params)

    async def _forget_gone_processes(self) -> None:
        """Delete the rows of instances whose process is gone from this machine
        (killed): what they owned can be taken over now, not once they go stale."""
        if self._host is None:
            return
        params = (self._host, self.instance_id)
        for instance, pid in await self._in_worker(ops.fetch_all, ops.SQL_LOCAL_INSTANCES, params):
            if pid is not None and process_gone(int(pid)):
                log.info(
                    "storage: instance %s (pid %d) is gone; taking over its work", instance, pid
                )
                await self._in_worker(ops.execute, ops.SQL_UNREGISTER, (instance,))

    async def _beat_forever(self) -> None:
        failures = FailureLog(log, "storage: heartbeat failed")
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self._beat()
            except sqlite3.Error as exc:  # the next beat tries again
                failures.failed(exc)
            else:
                failures.succeeded()

    async def reset(self, conversation: str) -> None:
        """Delete the conversation's turns; dedupe rows and settings stay.

        On the writer: a long conversation is many rows to delete."""
        self._cache.forget(conversation)
        try:
            await self._write(ops.execute, ops.SQL_RESET, (conversation,))
            await self._write(ops.execute, ops.SQL_RESET_MEDIA, (conversation,))
        finally:  # a load meanwhile may have held the turns again
            self._cache.forget(conversation)

    async def add_media(
        self, conversation: str, turn_id: int, media: Sequence[Media], image_budget: int
    ) -> None:
        """Keep an attachment's content; the oldest images go past ``image_budget``."""
        rows = media_rows.to_rows(conversation, turn_id, media, self._clock())
        await self._write(ops.add_media, rows, conversation, image_budget)

    async def media_for(self, conversation: str, first: int, last: int) -> dict[int, list[Media]]:
        """The media of user turns ``first``..``last``, by turn id."""
        rows = await self._run(ops.fetch_all, ops.SQL_MEDIA_FOR, (conversation, first, last))
        return media_rows.by_turn(rows)

    async def get_model(self, conversation: str) -> str | None:
        """The model the conversation picked (``!model``), or None."""
        row = await self._run(ops.fetch_one, ops.SQL_GET_MODEL, (conversation,))
        return None if row is None else ops.opt_str(row[0])

    async def set_model(self, conversation: str, model: str | None) -> None:
        """Pick, or with None forget, the conversation's model."""
        await self._write(ops.execute, ops.SQL_SET_MODEL, (conversation, model))

    async def get_system_prompt(self, conversation: str) -> str | None:
        """The conversation's own system prompt, or None."""
        row = await self._run(ops.fetch_one, ops.SQL_GET_PROMPT, (conversation,))
        return None if row is None else ops.opt_str(row[0])

    async def set_system_prompt(self, conversation: str, prompt: str | None) -> None:
        """Set, or with None clear, the conversation's system prompt."""
        await self._write(ops.execute, ops.SQL_SET_PROMPT, (conversation, prompt))
        self._cache.set_prompt(conversation, prompt)

    # -- the usage ledger (bot/usage.py, storage/usage_sql.py) --

    async def record_usage(self, records: Sequence[UsageRecord]) -> None:
        """Add each record to its day's row, in one write transaction."""
        rows = [usage_sql.record_params(record) for record in records]
        if rows:
            await self._write(ops.execute_many, usage_sql.SQL_RECORD, rows)

    async def usage_totals(self, query: UsageQuery) -> UsageTotals:
        """Sums over the rows ``query`` picks (a short range of the key)."""
        params = usage_sql.query_params(query)
        return usage_sql.totals_of(await self._run(ops.fetch_one, usage_sql.SQL_TOTALS, params))

    async def top_users(self, query: UsageQuery, limit: int) -> list[tuple[str, UsageTotals]]:
        """The persons with the most tokens among the rows ``query`` picks."""
        params = (*usage_sql.query_params(query), limit)
        rows = await self._run(ops.fetch_all, usage_sql.SQL_TOP, params)
        return [(str(row[0]), usage_sql.totals_of(row[1:])) for row in rows]

    async def forget_person(self, conversation_prefix: str, person: str) -> int:
        """Delete a person's turns and the answers to them in one workspace (on the
        writer: it scans the turns); how many of theirs."""
        try:
            return await self._write(ops.forget_person, conversation_prefix, person)
        finally:
            self._cache.clear()  # held histories may hold their turns

    async def prune_seen(self) -> int:
        """Forget dedupe rows older than the retention (on the writer); how many."""
        self._prunes.postpone()
        cutoff = self._clock() - SEEN_RETENTION_S
        minute = int(self._clock() // 60) - 1  # per-person counts of older minutes go too
        pruned = await self._write(shared.prune_seen, cutoff, minute)
        if pruned:
            log.info("storage: pruned %d old dedupe rows", pruned)
        return pruned

    async def prune_turns(self) -> int:
        """Delete turns older than ``retention_days`` in batches (none with 0); how many.

        Dedupe rows stay for their own retention, so a redelivery of a deleted
        message is still recognised."""
        if not self._retention_s:
            return 0
        cutoff = self._clock() - self._retention_s

        async def delete_batch() -> int:
            deleted = await self._write(ops.execute, ops.SQL_PRUNE_TURNS, (cutoff, PRUNE_BATCH))
            if deleted:
                self._cache.clear()  # held turns may be among them; rare, so simply all
            return int(deleted)

        deleted = await delete_in_batches(delete_batch)
        await self._write(ops.execute, ops.SQL_PRUNE_MEDIA, (cutoff,))
        return deleted

    async def _prune(self) -> None:
        await self.prune_seen()
        await self.prune_turns()

    def _data_version_now(self) -> int:
        """SQLite's count of commits by other connections (ours do not change it);
        -1 if it cannot be read, which empties the cache as a change would."""
        if self._inline is None:
            raise RuntimeError(f"store {self.path!r} is not open")
        try:
            return int(self._inline.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.OperationalError as exc:
            log.debug("storage: data_version unreadable (%s); not using the turn cache", exc)
            return -1

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(connection, *args)`` on the inline connection, at once.

        If another connection holds the lock, ``fn`` fails at its start (the inline
        connection does not wait) or rolls back, and runs again on the writer,
        which waits for the lock while the event loop goes on.
        """
        if self._inline is None:
            raise RuntimeError(f"store {self.path!r} is not open")
        try:
            return fn(self._inline, *args)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _BUSY_CODES:
                raise
            log.debug("storage: file busy, %s waits on the writer", fn.__name__)
        return await self._in_worker(fn, *args)

    async def _write(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(connection, *args)`` on the writer, committed when this returns;
        the WAL is checkpointed after it now and then.

        The turn cache must learn of other connections' commits. The inline
        connection's ``data_version`` now also counts ours, so it is judged only while
        none of ours is under way (``load_context``); each write reads the writer's
        own inside its transaction, which counts only the others'.
        """
        job = self._writer().write(fn, *args)
        self._writing += 1
        try:
            version, result = await asyncio.shield(job)
        except asyncio.CancelledError:
            # The writer still commits it, and the cache will not hear of it: start
            # the cache over now and once it has. The callback runs before any later
            # job's caller resumes (the writer settles its jobs in order).
            self._cache.clear()
            job.add_done_callback(self._cancelled_write_done)
            raise
        except BaseException:
            self._writing -= 1
            raise
        self._writing -= 1
        if version != self._worker_version:  # another connection committed meanwhile
            self._worker_version = version
            self._cache.clear()
        self._data_version = self._data_version_now()  # ours are known to the cache
        now = time.monotonic()
        if self._checkpoint is None and now >= self._next_checkpoint:
            self._next_checkpoint = now + self._checkpoint_interval_s
            self._checkpoint = asyncio.get_running_loop().create_task(self._checkpoint_wal())
        return result

    def _cancelled_write_done(self, job: asyncio.Future[Any]) -> None:
        if not job.cancelled():
            job.exception()  # marks a failure as seen: its caller is gone, nobody else looks
        self._writing -= 1
        self._cache.clear()
        self._data_version = -1  # judged again at the next read

    async def _checkpoint_wal(self) -> None:
        try:
            await self._in_worker(ops.checkpoint)
        except Exception as exc:  # the WAL just grows until the next try; nothing is lost
            self._checkpoint_failures.failed(exc)
        else:
            self._checkpoint_failures.succeeded()
        finally:
            self._checkpoint = None

    async def _in_worker(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(connection, *args)`` alone on the writer, in queue order.

        If the caller is cancelled, ``fn`` still completes.
        """
        return await self._writer().run(fn, *args)

    def _writer(self) -> Writer:
        if self._worker is None:
            raise RuntimeError(f"store {self.path!r} is not open")
        return self._worker


def _inline_connection(target: str, uri: bool) -> sqlite3.Connection:
    """The event loop's connection: it only reads, never waits for a lock (``_run``
    hands such work to the worker) and never checkpoints (``_write`` asks the worker to)."""
    con = sqlite3.connect(target, uri=uri, isolation_level=None)
    for pragma in ("busy_timeout = 0", *BOTH_CONNECTIONS):
        con.execute(f"PRAGMA {pragma}")
    return con


def _configure(con: sqlite3.Connection, path: str) -> None:
    """Set the writer's connection up and bring the schema up to date (on its thread)."""
    # busy_timeout first, so the journal-mode switch waits for other instances.
    con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = _switch_to_wal(con)
    if mode not in ("wal", "memory"):
        log.warning("storage: journal_mode is %s, not WAL (filesystem without WAL?)", mode)
    for pragma in BOTH_CONNECTIONS:
        con.execute(f"PRAGMA {pragma}")
    _migrate(con, path)


def _switch_to_wal(con: sqlite3.Connection) -> str:
    """Set WAL mode, retrying while another instance holds the lock.

    SQLite does not call the busy handler for this switch: two instances opening a
    new file at the same moment get "database is locked" at once, so wait here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(con.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(WAL_SWITCH_RETRY_S)  # on the writer, not the loop's


def _migrate(con: sqlite3.Connection, path: str) -> None:
    """Apply the missing migration steps in one transaction.

    BEGIN IMMEDIATE first, then read the version: another instance opening the
    same file at the same moment waits and then finds nothing left to do.
    """
    con.execute("BEGIN IMMEDIATE")
    try:
        version = int(con.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StartupError(
                f"storage: {path} has schema v{version}, newer than this version of the "
                f"bot understands (v{SCHEMA_VERSION}); upgrade the bot or use another file"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {number}")
        con.execute("COMMIT")
    except BaseException:
        con.rollback()
        raise
    if version < SCHEMA_VERSION:
        log.info("storage: migrated %s from schema v%d to v%d", path, version, SCHEMA_VERSION)
