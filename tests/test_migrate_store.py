"""``python -m bot migrate-store``: a SQLite file copied into the real PostgreSQL
(tests/postgres_support.py) row for row, twice without doubling, resumed after an
interruption, and back the other way; bad URLs are one line and exit 2."""

from __future__ import annotations

import asyncio
import io
import signal
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage import SqliteStore
from storage.migrate import MigrationError, migrate_store
from storage.migrate_progress import Progress
from storage.migrate_tables import TABLES, Table
from storage.postgres import PostgresStore
from tests.postgres_support import postgres_schema
from tests.store_support import user
from tests.support import bot_env, run_bot, spawn_bot

BIG_TURNS = 100_000
SMALL_TURNS = 5_000
CONVERSATIONS = 500
SMALL_BATCH = 1_000
RESETS_ABOVE = 37  # ids handed out and reset away: the target must not reuse them
PASSWORD = "LEAK-PG-PASSWORD-5521"
KILL_LIMIT_S = 60.0  # from start to three batches in: normally about a second
POLL_S = 0.02
Row = tuple[Any, ...]


class Interrupted(Exception):
    """Raised after a batch: the copy stops as a kill would stop it."""


def seed(path: Path, turns: int) -> None:
    """A SQLite store holding ``turns`` turns (questions and answers, every column
    used), their dedupe rows, some system prompts, and a turn id mark above them."""
    con = sqlite3.connect(path)
    with con:
        con.executemany(
            "INSERT INTO turns (id, conversation, role, content, tokens, author_id, "
            "author_name, message_id, created_at, reply_to, anchor, delivered, reply_target, "
            "is_dm) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (_turn(i) for i in range(1, turns + 1)),
        )
        con.executemany(
            "INSERT INTO seen (conversation, message_id, at, done, owner) VALUES (?, ?, ?, ?, ?)",
            (
                (_conversation(i), f"m{i}", 1_700_000_000.0 + i, i % 3 == 0, "gone-instance")
                for i in range(1, turns + 1, 2)
            ),
        )
        con.executemany(
            "INSERT INTO conversation_settings (conversation, system_prompt) VALUES (?, ?)",
            ((_conversation(i), f"be brief {i} 한국어" if i % 7 else None) for i in range(99)),
        )
        con.execute(
            "UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'turns'", (RESETS_ABOVE,)
        )
    con.close()


def _conversation(i: int) -> str:
    return f"discord:g{i % 7}:c{i % CONVERSATIONS}::"


def _turn(i: int) -> Row:
    question = i % 2 == 1
    return (
        i,
        _conversation(i if question else i - 1),
        "user" if question else "assistant",
        f"turn {i} — ünïcode ✓ " + "x" * (i % 50),
        i % 300,
        f"u{i % 13}" if question else None,
        "Ann" if question else None,
        f"m{i}" if question else None,
        1_700_000_000.0 + i / 3,
        None if question else i - 1,
        i if question else i - 1,
        i % 11 != 0,
        f"channel:{i % 97}:message:{i}" if question else None,
        question and i % 5 == 0,
    )


async def new_sqlite(path: Path) -> None:
    store = SqliteStore(str(path))
    await store.open()
    await store.close()


def sqlite_rows(path: Path, table: Table) -> list[Row]:
    con = sqlite3.connect(path)
    try:
        query = (
            f"SELECT {', '.join(table.columns)} FROM {table.name} ORDER BY {', '.join(table.key)}"
        )
        return [_normal(table, row) for row in con.execute(query)]
    finally:
        con.close()


async def postgres_rows(url: str, table: Table) -> list[Row]:
    con = await asyncpg.connect(url)
    try:
        keys = ", ".join(f'{k} COLLATE "C"' if k != "id" else k for k in table.key)
        rows = await con.fetch(
            f"SELECT {', '.join(table.columns)} FROM {table.name} ORDER BY {keys}"
        )
        return [_normal(table, tuple(row)) for row in rows]
    finally:
        await con.close()


def _normal(table: Table, row: Row) -> Row:
    flags = {table.index(c) for c in table.booleans}
    return tuple(bool(v) if i in flags else v for i, v in enumerate(row))


async def assert_same(path: Path, url: str) -> None:
    for table in TABLES:
        assert await postgres_rows(url, table) == sqlite_rows(path, table), table.name


async def test_100000_turns_move_into_postgresql_row_for_row(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, BIG_TURNS)
    async with postgres_schema() as url:
        env = bot_env(tmp_path)
        code, out, err = await run_bot(
            ["migrate-store", "--from", f"sqlite:///{path}", "--to", url], env
        )
        assert code == 0, err
        assert out.splitlines()[:3] == [
            "conversation_settings: 99 copied, 0 already there",
            "seen: 50,000 copied, 0 already there",
            "turns: 100,000 copied, 0 already there",
        ]
        assert "[##############################] 100% 150,099/150,099 rows (turns)" in err
        await assert_same(path, url)
        # The bot goes on in PostgreSQL: new turns take ids above every copied one
        # (and above the ones reset away), and a copied history loads as it was.
        store = PostgresStore(url)
        await store.open()
        try:
            new_id = await store.add_user_turn(_conversation(1), user("after-move"))
            assert new_id == BIG_TURNS + RESETS_ABOVE + 1
            context = await store.load_context(_conversation(1), new_id, 4)
            assert context.system_prompt == "be brief 1 한국어"
            assert [t.content for t in context.turns][-1] == "hi"
        finally:
            await store.close()


async def test_a_second_run_copies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, SMALL_TURNS)
    async with postgres_schema() as url:
        await migrate_store(f"sqlite:///{path}", url, progress_to=_quiet(tmp_path))
        again = await migrate_store(f"sqlite:///{path}", url, progress_to=_quiet(tmp_path))
        assert [(t.table, t.copied, t.skipped) for t in again.tables] == [
            ("conversation_settings", 0, 99),
            ("seen", 0, SMALL_TURNS // 2),
            ("turns", 0, SMALL_TURNS),
        ]
        await assert_same(path, url)


async def test_an_interrupted_copy_is_finished_by_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, SMALL_TURNS)
    turn_batches = 0

    def stop_after_two_batches_of_turns(table: str, rows: int) -> None:
        nonlocal turn_batches
        turn_batches += table == "turns"
        if turn_batches == 2:
            raise Interrupted

    async with postgres_schema() as url:
        with pytest.raises(Interrupted):
            await migrate_store(
                f"sqlite:///{path}",
                url,
                batch_rows=SMALL_BATCH,
                progress_to=_quiet(tmp_path),
                after_batch=stop_after_two_batches_of_turns,
            )
        assert len(await postgres_rows(url, TABLES[-1])) == 2 * SMALL_BATCH
        rest = await migrate_store(
            f"sqlite:///{path}", url, batch_rows=SMALL_BATCH, progress_to=_quiet(tmp_path)
        )
        turns = rest.tables[-1]
        assert (turns.copied, turns.skipped) == (SMALL_TURNS - 2 * SMALL_BATCH, 2 * SMALL_BATCH)
        await assert_same(path, url)


async def test_a_copy_killed_midway_is_finished_by_running_it_again(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, SMALL_TURNS)
    blocked_at = 3 * SMALL_BATCH + 1  # the first id of the fourth batch of turns
    source = f"sqlite:///{path}"
    async with postgres_schema() as url:
        store = PostgresStore(url)  # the schema, so that the test can hold a row in it
        await store.open()
        await store.close()
        holder = await asyncpg.connect(url)
        try:
            # An uncommitted turn under one of the ids: the batch that inserts it waits
            # for this transaction, with the three batches before it committed.
            holder_tx = holder.transaction()
            await holder_tx.start()
            await holder.execute(
                "INSERT INTO turns (id, conversation, role, content, tokens, created_at, anchor)"
                " VALUES ($1, 'x', 'user', 'x', 1, 0, $1)",
                blocked_at,
            )
            batch = ["--batch-size", str(SMALL_BATCH)]
            args = ["migrate-store", "--from", source, "--to", url, *batch]
            proc = await spawn_bot(*args, env=bot_env(tmp_path))
            try:
                await asyncio.wait_for(_turns_reach(url, 3 * SMALL_BATCH), KILL_LIMIT_S)
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode == -signal.SIGKILL
            await holder_tx.rollback()
        finally:
            await holder.close()
        code, out, err = await run_bot(
            ["migrate-store", "--from", source, "--to", url], bot_env(tmp_path)
        )
        assert code == 0, err
        assert f"turns: {SMALL_TURNS - 3 * SMALL_BATCH:,} copied, 3,000 already there" in out
        await assert_same(path, url)


async def _turns_reach(url: str, count: int) -> None:
    con = await asyncpg.connect(url)
    try:
        # Another process writes it: there is no event to wait on.
        while await con.fetchval("SELECT count(*) FROM turns") < count:  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)
    finally:
        await con.close()


async def test_postgresql_moves_back_into_a_new_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, SMALL_TURNS)
    back = tmp_path / "back" / "bot.db"
    async with postgres_schema() as url:
        await migrate_store(f"sqlite:///{path}", url, progress_to=_quiet(tmp_path))
        await migrate_store(url, f"sqlite:///{back}", progress_to=_quiet(tmp_path))
        await assert_same(back, url)
    store = SqliteStore(str(back))
    await store.open()
    try:
        assert await store.add_user_turn("console:x", user("new")) == SMALL_TURNS + RESETS_ABOVE + 1
    finally:
        await store.close()


async def test_a_database_the_bot_already_used_is_not_mixed_into(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, SMALL_TURNS)
    async with postgres_schema() as url:
        store = PostgresStore(url)
        await store.open()
        await store.add_user_turn("slack:T1:C1:", user("its-own"))  # takes turn id 1
        await store.close()
        with pytest.raises(MigrationError) as raised:
            await migrate_store(f"sqlite:///{path}", url, progress_to=_quiet(tmp_path))
        assert "migrate-store: --to: turns id (1,) already holds another row" in str(raised.value)
        assert len(await postgres_rows(url, TABLES[-1])) == 1


async def test_a_store_a_running_bot_has_open_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    running = SqliteStore(str(path))  # as `python -m bot` holds it: beating
    await running.open()
    try:
        with pytest.raises(MigrationError) as raised:
            await migrate_store(f"sqlite:///{path}", f"sqlite:///{tmp_path / 'new.db'}")
    finally:
        await running.close()
    assert str(raised.value).startswith(
        f"migrate-store: --from: a bot is using this store (instance {running.instance_id}, "
    )
    done = await migrate_store(
        f"sqlite:///{path}", f"sqlite:///{tmp_path / 'new.db'}", progress_to=_quiet(tmp_path)
    )
    assert [t.copied for t in done.tables] == [0, 0, 0]


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        (
            "sqlite:///{tmp}/bot.db",
            f"postgresql://bot:{PASSWORD}@127.0.0.1:1/db",
            "error: migrate-store: --to: cannot use PostgreSQL at "
            "'postgresql://***@127.0.0.1:1/db': ",
        ),
        (
            "sqlite:///{tmp}/missing.db",
            "sqlite:///{tmp}/new.db",
            "error: migrate-store: --from: no SQLite file at '{tmp}/missing.db'",
        ),
        (
            f"mysql://bot:{PASSWORD}@db/bot",
            "sqlite:///{tmp}/new.db",
            "error: migrate-store: --from: unsupported URL 'mysql://***@db/bot'; ",
        ),
        ("sqlite:///{tmp}/bot.db", "memory://", "error: migrate-store: --to: an in-memory store"),
        ("sqlite:///{tmp}/bot.db", "sqlite:///{tmp}/bot.db", "error: migrate-store: --to: "),
    ],
    ids=["unreachable-target", "missing-source", "unsupported-source", "memory", "same"],
)
async def test_bad_urls_are_one_line_naming_the_flag_and_exit_2(
    tmp_path: Path, source: str, target: str, expected: str
) -> None:
    await new_sqlite(tmp_path / "bot.db")
    tmp = str(tmp_path)
    args = ["migrate-store", "--from", source.format(tmp=tmp), "--to", target.format(tmp=tmp)]
    code, out, err = await run_bot(args, bot_env(tmp_path))
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith(expected.format(tmp=tmp)), err
    assert PASSWORD not in out + err


def _quiet(tmp_path: Path) -> io.StringIO:
    """Where a test's progress line goes (not a terminal: ten lines at most)."""
    return io.StringIO()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_is_redrawn_on_a_terminal_and_ten_lines_elsewhere() -> None:
    shown = Terminal()
    bar = Progress(shown, 40)
    for _ in range(4):
        bar.advance(10, "turns")
    bar.advance(0, "seen")  # a shorter line covers the longer one before it
    bar.finish()
    assert shown.getvalue().startswith("\r[########----------------------]  25% 10/40 rows")
    assert shown.getvalue().endswith("\r[##############################] 100% 40/40 rows (seen) \n")
    logged = io.StringIO()
    bar = Progress(logged, 1_000)
    for _ in range(1_000):
        bar.advance(1, "seen")
    assert len(logged.getvalue().splitlines()) == 10


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--from", "sqlite:///x.db"], "error: migrate-store: --to: missing; "),
        (["--to", "sqlite:///x.db"], "error: migrate-store: --from: missing; "),
        (
            ["--from", "sqlite:///a.db", "--to", "sqlite:///b.db", "--batch-size", "0"],
            "error: migrate-store: --batch-size: must be at least 1, got 0",
        ),
    ],
    ids=["no-target", "no-source", "no-batch"],
)
async def test_a_missing_flag_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    code, _, err = await run_bot(["migrate-store", *args], bot_env(tmp_path))
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(expected), err
