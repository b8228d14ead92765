"""The SQLite writer thread (storage/sqlite_writer.py): group commit, and its promises.

* Writes queued while the writer is busy are committed together, in one COMMIT.
* A job's result arrives only once its commit is done (another connection sees it).
* A job that fails is undone alone; the others of its group commit.
* A full disk (SQLite then rolls back the whole transaction) or a failed COMMIT fails
  every job of the group with that error: none is reported done, none is stored.
* The queue is bounded: one job more than ``max_pending`` is refused at once with
  ``WriteQueueFull``, which the core turns into a storage error like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.errors import StorageError
from fakes.disk_stall import WriterGate
from storage import SqliteStore
from storage.sqlite_writer import MAX_PENDING, THREAD_NAME, SqliteWriter, WriteQueueFull
from tests.support import CoreFactory, RecordingSink, message

HANG_GUARD_S = 10.0


class Blocker:
    """A solo job that holds the writer thread until released: what a stalled disk does."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, _con: sqlite3.Connection) -> None:
        self.started.set()
        self.release.wait(HANG_GUARD_S)

    async def hold(self, writer: SqliteWriter) -> asyncio.Task[None]:
        task = asyncio.create_task(writer.run(self))
        assert await asyncio.to_thread(self.started.wait, HANG_GUARD_S)
        return task


@contextlib.asynccontextmanager
async def open_writer(path: Path, max_pending: int = 64) -> AsyncIterator[SqliteWriter]:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer = SqliteWriter(con, max_pending=max_pending)
    try:
        await writer.run(_schema)
        yield writer
    finally:
        await writer.close()


def _schema(con: sqlite3.Connection) -> None:
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE t (x TEXT UNIQUE)")


def insert(*values: str) -> Callable[[sqlite3.Connection], int]:
    def job(con: sqlite3.Connection) -> int:
        for value in values:
            con.execute("INSERT INTO t VALUES (?)", (value,))
        return len(values)

    return job


def stored(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [row[0] for row in db.execute("SELECT x FROM t ORDER BY rowid")]


async def outcomes(tasks: Sequence[asyncio.Future[Any]]) -> list[Any]:
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_writes_queued_meanwhile_commit_together_and_each_result_follows_its_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    commits: list[str] = []
    async with open_writer(path) as writer:
        await writer.run(lambda con: con.set_trace_callback(commits.append))
        blocker = Blocker()
        held = await blocker.hold(writer)
        writes = [asyncio.ensure_future(writer.write(insert(f"v{n}"))) for n in range(5)]
        await asyncio.sleep(0)  # all five are queued behind the blocker
        blocker.release.set()
        await held
        first = await writes[0]
        assert stored(path) == [f"v{n}" for n in range(5)]  # committed before the result
        results = [first, *[await w for w in writes[1:]]]
    versions = {version for version, _ in results}
    assert [value for _, value in results] == [1] * 5 and len(versions) == 1
    assert sum(1 for sql in commits if sql.strip().upper() == "COMMIT") == 1


async def test_writes_run_on_the_writer_thread_not_the_loops(tmp_path: Path) -> None:
    async with open_writer(tmp_path / "w.db") as writer:
        name = await writer.run(lambda _con: threading.current_thread().name)
        _, write_name = await writer.write(lambda _con: threading.current_thread().name)
    assert name == write_name == THREAD_NAME != threading.current_thread().name


async def test_a_failing_job_is_undone_alone(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    async with open_writer(path) as writer:
        await writer.write(insert("taken"))
        blocker = Blocker()
        held = await blocker.hold(writer)
        # The middle job stores a row, then breaks a constraint: its row goes too.
        jobs = [insert("a"), insert("half", "taken"), insert("c")]
        tasks = [asyncio.ensure_future(writer.write(job)) for job in jobs]
        await asyncio.sleep(0)
        blocker.release.set()
        await held
        first, middle, last = await outcomes(tasks)
    assert isinstance(middle, sqlite3.IntegrityError)
    assert first[1] == 1 and last[1] == 1
    assert stored(path) == ["taken", "a", "c"]


async def test_a_full_disk_fails_every_write_of_the_group_and_stores_none(
    tmp_path: Path,
) -> None:
    """SQLITE_FULL rolls the whole transaction back: the small writes queued with the
    big one were undone too, so they must fail, not report success."""
    path = tmp_path / "w.db"
    async with open_writer(path) as writer:
        await writer.write(insert("before"))
        pages = await writer.run(lambda con: con.execute("PRAGMA page_count").fetchone()[0])
        await writer.run(lambda con: con.execute(f"PRAGMA max_page_count = {pages + 1}"))
        blocker = Blocker()
        held = await blocker.hold(writer)
        jobs = [insert("small"), insert("x" * 100_000), insert("after")]
        tasks = [asyncio.ensure_future(writer.write(job)) for job in jobs]
        await asyncio.sleep(0)
        blocker.release.set()
        await held
        results = await outcomes(tasks)
        assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
        assert all("full" in str(r) for r in results)
        await writer.run(lambda con: con.execute("PRAGMA max_page_count = 1000000"))
        await writer.write(insert("later"))  # the writer goes on once there is room
    assert stored(path) == ["before", "later"]


async def test_a_failed_commit_fails_every_write_of_the_group(tmp_path: Path) -> None:
    path = tmp_path / "w.db"

    def refuse_commit(action: int, arg1: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    async with open_writer(path) as writer:
        await writer.run(lambda con: con.set_authorizer(refuse_commit))
        results = await outcomes(
            [asyncio.ensure_future(writer.write(insert(f"v{n}"))) for n in range(3)]
        )
        assert all(isinstance(r, sqlite3.DatabaseError) for r in results), results
        await writer.run(lambda con: con.set_authorizer(None))
        await writer.write(insert("later"))
    assert stored(path) == ["later"]


async def test_a_full_queue_refuses_at_once_and_takes_writes_again_once_drained(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    async with open_writer(path, max_pending=3) as writer:
        blocker = Blocker()
        held = await blocker.hold(writer)
        queued = [asyncio.ensure_future(writer.write(insert(f"v{n}"))) for n in range(2)]
        await asyncio.sleep(0)
        assert writer.pending == 3
        with pytest.raises(WriteQueueFull):
            await writer.write(insert("refused"))
        blocker.release.set()
        await held
        await asyncio.gather(*queued)
        assert writer.pending == 0
        await writer.write(insert("accepted"))
    assert stored(path) == ["v0", "v1", "accepted"]


async def test_a_write_whose_caller_was_cancelled_still_commits(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    async with open_writer(path) as writer:
        blocker = Blocker()
        held = await blocker.hold(writer)
        write = asyncio.ensure_future(writer.write(insert("kept")))
        await asyncio.sleep(0)
        write.cancel()
        blocker.release.set()
        await held
        with pytest.raises(asyncio.CancelledError):
            await write
        await writer.run(lambda _con: None)  # jobs run in order: the write ran before
        assert writer.pending == 0
    assert stored(path) == ["kept"]


async def test_close_finishes_what_is_queued_and_then_refuses(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    async with open_writer(path) as writer:
        write = asyncio.ensure_future(writer.write(insert("last")))
        await asyncio.sleep(0)
        await writer.close()
        assert (await write)[1] == 1
        with pytest.raises(RuntimeError):
            await writer.write(insert("too late"))
    assert stored(path) == ["last"]


async def test_a_full_write_queue_is_a_storage_error_for_the_message(
    tmp_path: Path, core_factory: CoreFactory
) -> None:
    """Through the core: the message is refused like any other storage failure
    (Slack redelivers it; Discord and the console tell the user), and nothing of it
    is stored."""
    path = tmp_path / "bot.db"
    store = SqliteStore(str(path))
    await store.open()
    core = await core_factory(store)
    gate = WriterGate(HANG_GUARD_S)  # the store's writer runs in a child process
    writer = store._worker
    assert writer is not None
    held = asyncio.create_task(store._in_worker(gate))
    filler: list[asyncio.Task[None]] = []
    try:
        while writer.pending < MAX_PENDING:  # the store's own jobs may hold a place too
            filler.append(asyncio.create_task(store._in_worker(_nothing)))
            await asyncio.sleep(0)
        with pytest.raises(StorageError, match="waiting for the disk"):
            await core.handle(message("hello"), RecordingSink())
    finally:
        gate.open()
        await held
        gate.remove()
        await asyncio.gather(*filler)
        await core.close(1.0)
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT COUNT(*) FROM turns").fetchone() == (0,)


def _nothing(_con: sqlite3.Connection) -> None:
    """A job that only takes a place in the queue."""
