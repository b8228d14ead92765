"""SQLite's write connection, off the event loop, committing writes in groups.

A write can wait on the disk (a frozen file system holds ``write()`` for as long as
it lasts), so no write runs on the event loop's thread. The writer wakes, takes
every job queued since its last wake-up, and runs them in order
(:func:`run_jobs`, the same in both hosts):

* a *write* (:meth:`SqliteWriter.write`) joins the group: one ``BEGIN IMMEDIATE``,
  a ``SAVEPOINT`` per job when there are several, one ``COMMIT``. A job that raises
  is rolled back to its savepoint and fails alone. If SQLite rolled back the whole
  transaction itself (a full disk, an I/O error) or the COMMIT fails, every job of
  the group fails with that error: nothing is reported done that was not committed.
* a *solo* job (:meth:`SqliteWriter.run`: a checkpoint, a scan, the schema set-up)
  runs outside any transaction, after the group before it is committed.

Each job's future is resolved only after its commit, all of a wake-up's futures in
one hand-over to the event loop (PERFORMANCE.md, "SQLite writes are committed in
groups, in a process of their own"). The host here is a thread of this process,
used for an in-memory database (and off POSIX); a database file gets a child
process (storage/sqlite_writer_process.py). At most ``max_pending`` jobs wait or
run; one more fails at once with :class:`WriteQueueFull` (a storage error: the
message is refused and the user told) instead of piling up behind a stalled disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

_T = TypeVar("_T")

MAX_PENDING = 1024  # jobs queued or running; far above a healthy disk's backlog
THREAD_NAME = "sqlite-writer"


class WriteQueueFull(sqlite3.OperationalError):
    """The writer already holds ``max_pending`` jobs (the disk is stalled or far
    too slow): this write is refused, not queued."""


class Writer(Protocol):
    """What the store needs of a writer, on a thread (here) or in a process of its
    own (storage/sqlite_writer_process.py)."""

    @property
    def pending(self) -> int: ...

    def write(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[tuple[int, _T]]: ...

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any] | None  # None in the writer process (no loop there)
    solo: bool
    stop: bool = False
    value: Any = None
    error: BaseException | None = field(default=None)


class WriterBase:
    """``write`` and ``run`` over a host's ``_submit`` (a thread here, a process in
    storage/sqlite_writer_process.py)."""

    def write(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[tuple[int, _T]]:
        """``fn(con, *args)`` inside a group's transaction; the future resolves once
        committed, with the ``data_version`` read when that transaction began (it
        changes exactly when another connection committed since this connection's
        previous group). Raises :class:`WriteQueueFull` at once when full.

        The job runs and commits even if the future is cancelled; a caller that must
        know when can ``asyncio.shield`` it and add a done callback."""
        return cast(asyncio.Future[tuple[int, _T]], self._submit(fn, args, solo=False))

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(con, *args)`` alone, outside any transaction, in queue order."""
        return cast(_T, await self._submit(fn, args, solo=True))

    _closing: bool
    _max_pending: int

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        raise NotImplementedError

    def _submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], solo: bool
    ) -> asyncio.Future[Any]:
        raise NotImplementedError

    def _admit(self) -> None:
        """Refuse one more job when closed, or at once when ``max_pending`` wait."""
        if self._closing:
            raise RuntimeError("the SQLite writer is closed")
        if self.pending >= self._max_pending:
            raise WriteQueueFull(f"{self.pending} writes are waiting for the disk; refusing more")


class SqliteWriter(WriterBase):
    """Runs functions of one ``sqlite3.Connection`` on a thread of its own."""

    def __init__(self, con: sqlite3.Connection, *, max_pending: int = MAX_PENDING) -> None:
        """``con`` must be opened with ``check_same_thread=False`` and
        ``isolation_level=None``; from now on only the writer thread uses it."""
        self._con = con
        self._max_pending = max_pending
        self._pending = 0  # jobs submitted and not yet settled (event loop's count)
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._pending

    async def close(self) -> None:
        """Run what is queued, close the connection, end the thread; safe twice."""
        if self._closing:
            return
        self._closing = True
        future = self._loop.create_future()
        self._pending += 1
        self._jobs.put(_Job(_close, (), future, solo=True, stop=True))
        await asyncio.shield(future)
        # Only after the close job: a join while the disk still held the thread would
        # stall the loop (a cancelled close leaves the thread to finish on its own).
        self._thread.join()  # it only hands the last results over, then returns

    def _submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], solo: bool
    ) -> asyncio.Future[Any]:
        self._admit()
        future = self._loop.create_future()
        self._pending += 1
        self._jobs.put(_Job(fn, args, future, solo))
        return future

    # -- the event loop's side of a hand-over --

    def _settle(self, jobs: list[_Job]) -> None:
        self._pending -= len(jobs)
        for job in jobs:
            if job.future is None or job.future.done():  # the caller was cancelled
                continue
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.value)

    # -- the writer thread --

    def _serve(self) -> None:
        stop = False
        while not stop:
            jobs = [self._jobs.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    jobs.append(self._jobs.get_nowait())
            stop = any(job.stop for job in jobs)
            run_jobs(self._con, jobs)
            try:
                self._loop.call_soon_threadsafe(self._settle, jobs)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return


def run_jobs(con: sqlite3.Connection, jobs: list[_Job]) -> None:
    """Run one wake-up's jobs in order: consecutive writes as one group (one
    transaction), each solo job alone after the group before it is committed. Each
    job's ``value`` or ``error`` is set; nothing raises."""
    group: list[_Job] = []
    for job in jobs:
        if not job.solo:
            group.append(job)
            continue
        if group:
            _commit_group(con, group)
            group = []
        _run_solo(con, job)
    if group:
        _commit_group(con, group)


def _commit_group(con: sqlite3.Connection, group: list[_Job]) -> None:
    try:
        if con.in_transaction:  # an earlier rollback failed: start clean
            con.rollback()
        con.execute("BEGIN IMMEDIATE")
        version = int(con.execute("PRAGMA data_version").fetchone()[0])
        if len(group) == 1:  # its failure loses only its own work: no savepoint needed
            only = group[0]
            only.value = (version, only.fn(con, *only.args))
        else:
            for job in group:
                _run_in_savepoint(con, job, version)
        con.execute("COMMIT")
    except Exception as exc:  # the transaction is lost: so is every job of it
        if con.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                con.rollback()
        for job in group:
            if job.error is None:
                job.value, job.error = None, exc


def _run_in_savepoint(con: sqlite3.Connection, job: _Job, version: int) -> None:
    """Run ``job`` so that its failure undoes only its own statements; raise if the
    transaction itself is gone (SQLite rolled it back) or cannot be kept."""
    con.execute("SAVEPOINT job")
    try:
        value = job.fn(con, *job.args)
    except Exception as exc:
        if not con.in_transaction:
            raise  # SQLite rolled back the whole group (SQLITE_FULL, SQLITE_IOERR, ...)
        con.execute("ROLLBACK TO job")
        con.execute("RELEASE job")
        job.error = exc
        return
    con.execute("RELEASE job")
    job.value = (version, value)


def _run_solo(con: sqlite3.Connection, job: _Job) -> None:
    try:
        job.value = job.fn(con, *job.args)
    except Exception as exc:
        job.error = exc
        if con.in_transaction:  # a solo job must not leave one open for the next group
            with contextlib.suppress(sqlite3.Error):
                con.rollback()


def _close(con: sqlite3.Connection) -> None:
    """The last job: SQLite checkpoints and removes the WAL as the connection closes."""
    con.close()
