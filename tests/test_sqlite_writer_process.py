"""The SQLite writer in a child process (storage/sqlite_writer_process.py).

* The store's writes of a database file run in a child process, and each result
  comes back only once committed; jobs sent in one turn of the loop share a COMMIT.
* sqlite3's errors come back with their class and extended code (the store and
  storage/problems.py read the code).
* A writer that dies fails the jobs it held with a storage error, and the next write
  starts another; SIGINT and SIGTERM (a Ctrl-C, a container stop sent to the whole
  group) leave it running for the bot's own shutdown; it exits when the bot is
  SIGKILLed.
* While the writer is stalled, writes bigger than the pipe go on being accepted
  without blocking the event loop, and all commit, in order, once it moves again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.types import Turn
from fakes.disk_stall import StatementLog, WriterGate
from storage import SqliteStore
from storage.sqlite_writer_process import ProcessWriter, WriterProcessExited

GUARD_S = 10.0
POLL_S = 0.02
ROOT = Path(__file__).resolve().parents[1]
BIG_VALUE = "x" * 100_000  # each of these writes alone is more than a pipe holds


def _schema(con: sqlite3.Connection) -> None:
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE t (x TEXT UNIQUE)")


def _insert(con: sqlite3.Connection, value: str) -> int:
    con.execute("INSERT INTO t VALUES (?)", (value,))
    return len(value)


def _pid(_con: sqlite3.Connection) -> int:
    return os.getpid()


def _environment(_con: sqlite3.Connection) -> dict[str, str]:
    return dict(os.environ)


def stored(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [row[0] for row in db.execute("SELECT x FROM t ORDER BY rowid")]


@contextlib.asynccontextmanager
async def process_writer(path: Path) -> AsyncIterator[ProcessWriter]:
    writer = ProcessWriter(str(path))
    try:
        await writer.run(_schema)
        yield writer
    finally:
        await writer.close()


@contextlib.asynccontextmanager
async def held_writer(
    path: Path,
) -> AsyncIterator[tuple[ProcessWriter, WriterGate, asyncio.Future[None]]]:
    """A writer whose child a gate job holds (what a stalled disk does) until
    ``gate.open()``; the gate job's future last."""
    gate = WriterGate(GUARD_S)
    async with process_writer(path) as writer:
        held = asyncio.ensure_future(writer.run(gate))
        try:
            await wait_for(lambda: gate.holding, "the gate job did not start")
            yield writer, gate, held
        finally:
            gate.open()
    gate.remove()


def gone(pid: int) -> bool:
    """The process ended (a zombie waiting for its parent counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(POLL_S)


async def test_the_stores_writes_run_in_a_child_process_committed_before_their_result(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.db"
    store = SqliteStore(str(path))
    await store.open()
    writer = store._worker
    assert isinstance(writer, ProcessWriter) and writer.pid is not None
    child = writer.pid
    try:
        assert await store._in_worker(_pid) == child != os.getpid()
        assert await store.add_user_turn("c", Turn("user", "hello", 1, message_id="m")) is not None
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("SELECT content FROM turns").fetchall() == [("hello",)]
    finally:
        await store.close()
    assert writer.pid is None and gone(child)  # closing the store ends the child


async def test_the_writer_gets_none_of_the_bots_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_KEY", "SLACK_BOT_TOKEN", "DISCORD_TOKEN", "DATABASE_URL"):
        monkeypatch.setenv(name, "s3cret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    async with process_writer(tmp_path / "w.db") as writer:
        environment = await writer.run(_environment)
    assert "s3cret" not in environment.values()
    assert environment["LANG"] == "C.UTF-8"


async def test_writes_sent_in_one_turn_share_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    log = StatementLog()
    async with process_writer(path) as writer:
        await writer.run(log.install)
        writes = [writer.write(_insert, f"v{n}") for n in range(5)]
        results = [await w for w in writes]
    commits = [sql for sql in log.statements() if sql.strip().upper() == "COMMIT"]
    log.remove()
    assert stored(path) == [f"v{n}" for n in range(5)]
    assert [value for _, value in results] == [2] * 5
    assert len(commits) == 1, commits


async def test_sqlite_errors_keep_their_class_and_code(tmp_path: Path) -> None:
    async with process_writer(tmp_path / "w.db") as writer:
        await writer.write(_insert, "same")
        with pytest.raises(sqlite3.IntegrityError) as caught:
            await writer.write(_insert, "same")
        assert caught.value.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_UNIQUE
        assert caught.value.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE"
        await writer.write(_insert, "other")  # the failure was that job's alone
    assert stored(tmp_path / "w.db") == ["same", "other"]


async def test_a_killed_writer_fails_what_it_held_and_the_next_write_starts_another(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    async with held_writer(path) as (writer, _, held):
        first_pid = writer.pid
        assert first_pid is not None
        queued = writer.write(_insert, "lost")
        os.kill(first_pid, signal.SIGKILL)
        for job in (held, queued):
            with pytest.raises(WriterProcessExited):
                await asyncio.wait_for(job, GUARD_S)
        assert writer.pending == 0
        await writer.write(_insert, "kept")
        assert writer.pid not in (None, first_pid)
    assert stored(path) == ["kept"]


async def test_sigint_and_sigterm_leave_the_writer_to_the_bots_shutdown(tmp_path: Path) -> None:
    async with process_writer(tmp_path / "w.db") as writer:
        pid = writer.pid
        assert pid is not None
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        await asyncio.sleep(0.2)
        await writer.write(_insert, "after the signals")
        assert writer.pid == pid
    assert gone(pid)


BOT_LIKE = """
import asyncio, sys
from storage import SqliteStore

async def main():
    store = SqliteStore(sys.argv[1])
    await store.open()
    print(store._worker.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_the_writer_exits_when_the_bot_is_killed(tmp_path: Path) -> None:
    bot = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        BOT_LIKE,
        str(tmp_path / "bot.db"),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert bot.stdout is not None
        writer_pid = int(await asyncio.wait_for(bot.stdout.readline(), GUARD_S))
        assert not gone(writer_pid)
        bot.kill()
        await bot.wait()
        await wait_for(lambda: gone(writer_pid), "the writer outlived the killed bot")
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()


async def test_a_stalled_writer_takes_more_than_a_pipe_holds_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    async with held_writer(path) as (writer, gate, held):
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        writes = [writer.write(_insert, f"{n}{BIG_VALUE}") for n in range(20)]  # ~2 MB
        await asyncio.sleep(0.2)
        assert time.monotonic() - started < 1.0 and ticks > 10  # the loop went on
        assert not any(w.done() for w in writes)
        gate.open()
        await held
        results = [await asyncio.wait_for(w, GUARD_S) for w in writes]
        ticking.cancel()
    assert [value for _, value in results] == [len(f"{n}{BIG_VALUE}") for n in range(20)]
    assert [v[:2].rstrip("x") for v in stored(path)] == [str(n) for n in range(20)]
