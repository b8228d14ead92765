"""``python -m bot migrate-store``: a SQLite file copied into the real PostgreSQL
(tests/postgres_support.py) row for row, twice without doubling, resumed after an
interruption, and back the other way (every copied table compared row for row: settings
with models, dedupe rows, the usage ledger, turns with tool calls, attachments with binary
data); bad URLs are one line and exit 2."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.types import ConversationKey, Media
from bot.usage import UsageQuery
from fakes.fake_openai import FakeOpenAI
from storage import SqliteStore
from storage.migrate import MigrationError, migrate_store
from storage.migrate_progress import Progress
from storage.migrate_tables import MEDIA, TABLES, TURNS, USAGE
from storage.postgres import PostgresStore
from tests.postgres_support import postgres_schema
from tests.store_support import user
from tests.support import bot_env, run_bot, spawn_bot

BIG_TURNS = 100_000
SMALL_TURNS = 5_000
CONVERSATIONS = 500
SMALL_BATCH = 1_000
TINY_TURNS, TINY_BATCH = 200, 7
RESETS_ABOVE = 37  # ids handed out and reset away: the target must not reuse them
USAGE_ROWS = 200
MEDIA_EVERY = 20  # one attachment per this many turns
PASSWORD = "LEAK-PG-PASSWORD-5521"
KILL_LIMIT_S = 60.0  # from start to three batches in: normally about a second
POLL_S = 0.02
Row = tuple[Any, ...]


class Interrupted(Exception):
    """Raised after a batch: the copy stops as a kill would stop it."""


def seed(path: Path, turns: int, resets_above: int = RESETS_ABOVE) -> None:
    """A SQLite store holding ``turns`` turns (questions and answers, every column
    used), their dedupe rows, some settings, a usage ledger, attachments, id marks
    ``resets_above`` above them, and coordination rows that are not to be copied."""
    con = sqlite3.connect(path)
    with con:
        con.executemany(
            "INSERT INTO turns (id, conversation, role, content, tokens, author_id, "
            "author_name, message_id, created_at, reply_to, anchor, delivered, reply_target, "
            "is_dm, tools) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (_turn(i) for i in range(1, turns + 1)),
        )
        con.executemany(
            f"INSERT INTO media ({', '.join(MEDIA.columns)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (_media(n, i) for n, i in enumerate(range(1, turns + 1, MEDIA_EVERY), 1)),
        )
        con.executemany(
            f"INSERT INTO usage ({', '.join(USAGE.columns)}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (_usage(i) for i in range(USAGE_ROWS)),
        )
        con.execute("INSERT INTO leases (conversation, holder, at) VALUES ('x', 'gone', 1.0)")
        con.execute("INSERT INTO person_counts (person, minute, count) VALUES ('u1', 5, 3)")
        con.executemany(
            "INSERT INTO seen (conversation, message_id, at, done, owner) VALUES (?, ?, ?, ?, ?)",
            (
                (_conversation(i), f"m{i}", 1_700_000_000.0 + i, i % 3 == 0, "gone-instance")
                for i in range(1, turns + 1, 2)
            ),
        )
        con.executemany(
            "INSERT INTO conversation_settings (conversation, system_prompt, model) "
            "VALUES (?, ?, ?)",
            (
                (
                    _conversation(i),
                    f"be brief {i} 한국어" if i % 7 else None,
                    f"model-{i % 3}" if i % 5 else None,
                )
                for i in range(99)
            ),
        )
        con.execute(
            "UPDATE sqlite_sequence SET seq = seq + ? WHERE name IN ('turns', 'media')",
            (resets_above,),
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
        None if question or i % 4 else json.dumps([{"role": "tool", "content": f"r{i} ✓"}]),
    )


def _media(n: int, turn: int) -> Row:
    """Attachment ``n`` of user turn ``turn``: an image (bytes with NULs) or a file's text."""
    image = n % 2 == 1
    data = b"\x00\xff\xd8" + n.to_bytes(4, "big") + b"\x00" * (n % 5) if image else b""
    name = f"a{n}.jpg" if image else f"notes {n}.txt"
    text = "" if image else f"file {n} 한국어"
    created = 1_700_000_000.0 + turn / 3
    return (
        n,
        _conversation(turn),
        turn,
        "image" if image else "text",
        name,
        text,
        data,
        len(data),
        85 + n % 7,
        created,
    )


def _usage(i: int) -> Row:
    """Row ``i`` of the ledger: every key column varied, estimated both ways."""
    return (
        f"discord:g{i % 7}",
        f"2026-12-{1 + i % 28:02d}",
        f"u{i % 13}",
        _conversation(i),
        "gpt-4o-mini" if i % 3 else "local",
        i % 2,
        1 + i % 4,
        10_000_000_000 + i,
        i * 17,
        i * 0.000125,
        i % 3,
    )


async def new_sqlite(path: Path) -> None:
    store = SqliteStore(str(path))
    await store.open()
    await store.close()


# Read from the SQLite file's own schema, not from storage/migrate_tables.py: a table
# or column the copy leaves out shows as a difference.
COPIED = {"conversation_settings", "seen", "usage", "turns", "media"}
NOT_COPIED = {"instances", "leases", "person_counts"}  # coordination of running bots


@dataclass(frozen=True, slots=True)
class Shape:
    """A table's columns, and its key as an ORDER BY for each database."""

    name: str
    columns: str
    sqlite_order: str
    postgres_order: str  # text keys in byte order, as SQLite sorts them


def shapes(path: Path) -> list[Shape]:
    con = sqlite3.connect(path)
    try:
        names = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert names - {"sqlite_sequence"} == COPIED | NOT_COPIED, "a table to copy or not?"
        found = []
        for name in sorted(COPIED):
            info = con.execute(f"PRAGMA table_info({name})").fetchall()
            key = [(pk, column, kind) for _, column, kind, _, _, pk in info if pk]
            ordered = [(column, kind) for _, column, kind in sorted(key)]
            found.append(
                Shape(
                    name,
                    ", ".join(row[1] for row in info),
                    ", ".join(column for column, _ in ordered),
                    ", ".join(
                        f'{column} COLLATE "C"' if kind == "TEXT" else column
                        for column, kind in ordered
                    ),
                )
            )
        return found
    finally:
        con.close()


def sqlite_rows(path: Path, shape: Shape) -> list[Row]:
    con = sqlite3.connect(path)
    try:
        query = f"SELECT {shape.columns} FROM {shape.name} ORDER BY {shape.sqlite_order}"
        return list(con.execute(query))
    finally:
        con.close()


async def postgres_rows(url: str, shape: Shape) -> list[Row]:
    con = await asyncpg.connect(url)
    try:
        query = f"SELECT {shape.columns} FROM {shape.name} ORDER BY {shape.postgres_order}"
        # A BOOLEAN is SQLite's INTEGER 0/1.
        return [
            tuple(int(v) if isinstance(v, bool) else v for v in row)
            for row in await con.fetch(query)
        ]
    finally:
        await con.close()


async def postgres_count(url: str, table: str) -> int:
    con = await asyncpg.connect(url)
    try:
        return int(await con.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await con.close()


SEQUENCES = tuple(table.sequence for table in TABLES if table.sequence)


async def postgres_snapshot(url: str, path: Path) -> dict[str, list[Row]]:
    """Every row of every copied table (as SQLite file ``path`` has them) and the id
    sequences: what a refused copy must leave as it was."""
    found = {shape.name: await postgres_rows(url, shape) for shape in shapes(path)}
    con = await asyncpg.connect(url)
    try:
        for name in SEQUENCES:
            found[name] = [tuple(await con.fetchrow(f"SELECT last_value, is_called FROM {name}"))]
    finally:
        await con.close()
    return found


def sqlite_snapshot(path: Path) -> dict[str, list[Row]]:
    """Every row of every copied table and the id marks, in SQLite file ``path``."""
    found = {shape.name: sqlite_rows(path, shape) for shape in shapes(path)}
    con = sqlite3.connect(path)
    try:
        found["sqlite_sequence"] = list(con.execute("SELECT * FROM sqlite_sequence ORDER BY 1"))
    finally:
        con.close()
    return found


async def assert_same(path: Path, url: str) -> None:
    """Every column of every row of every copied table alike on both sides (none of
    them empty), and no coordination row carried over."""
    for shape in shapes(path):
        rows = sqlite_rows(path, shape)
        assert rows, shape.name
        assert await postgres_rows(url, shape) == rows, shape.name
    for name in NOT_COPIED - {"instances"}:
        assert await postgres_count(url, name) == 0, name


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
        media = BIG_TURNS // MEDIA_EVERY
        assert out.splitlines()[:5] == [
            "conversation_settings: 99 copied, 0 already there",
            "seen: 50,000 copied, 0 already there",
            f"usage: {USAGE_ROWS} copied, 0 already there",
            "turns: 100,000 copied, 0 already there",
            f"media: {media:,} copied, 0 already there",
        ]
        total = f"{99 + 50_000 + USAGE_ROWS + BIG_TURNS + media:,}"
        assert f"[##############################] 100% {total}/{total} rows (media)" in err
        await assert_same(path, url)
        await _goes_on_in_postgresql(path, url)


async def _goes_on_in_postgresql(path: Path, url: str) -> None:
    """New turns and attachments take ids above every copied one (and above the ones
    reset away); a copied history, model and ledger read as they did in SQLite."""
    quota = UsageQuery("discord:g1", "2026-12-01", "2027-01-01", person="u1")
    before = SqliteStore(str(path))
    await before.open()
    try:
        totals = await before.usage_totals(quota)
    finally:
        await before.close()
    assert totals.answers > 0 and totals.estimated > 0
    store = PostgresStore(url)
    await store.open()
    try:
        new_id = await store.add_user_turn(_conversation(1), user("after-move"))
        assert new_id == BIG_TURNS + RESETS_ABOVE + 1
        context = await store.load_context(_conversation(1), new_id, 4)
        assert context.system_prompt == "be brief 1 한국어"
        assert [t.content for t in context.turns][-1] == "hi"
        assert await store.get_model(_conversation(1)) == "model-1"
        assert await store.usage_totals(quota) == totals
        assert (await store.media_for(_conversation(1), 1, 1))[1] == [
            Media("image", "a1.jpg", "", _media(1, 1)[6], _media(1, 1)[8])
        ]
        await store.add_media(_conversation(1), new_id, [Media("text", "n", "t")], 10**6)
    finally:
        await store.close()
    con = await asyncpg.connect(url)
    try:
        newest = await con.fetchval("SELECT max(id) FROM media")
        assert newest == BIG_TURNS // MEDIA_EVERY + RESETS_ABOVE + 1
    finally:
        await con.close()


QUESTIONS = ("remember the word pineapple", "which word?", "and once more?")
ATTACHMENT = Media("text", "notes.txt", "pineapple notes")
MEDIA_BUDGET = 10**6
CONSOLE = ConversationKey("console", "local", "default").as_str()  # its one conversation


async def ask(env: dict[str, str], question: str) -> None:
    """``question`` piped into ``python -m bot console``: stored and answered, exit 0."""
    code, out, err = await run_bot(["console"], env, f"{question}\n".encode())
    assert code == 0, err
    assert out.strip() and "error" not in err.lower(), err


async def move(source: str, target: str, tmp_path: Path) -> str:
    """``python -m bot migrate-store`` from ``source`` into ``target``: its summary."""
    args = ["migrate-store", "--from", source, "--to", target]
    code, out, err = await run_bot(args, bot_env(tmp_path))
    assert code == 0, err
    return out


async def attach(store: SqliteStore | PostgresStore, turn_id: int) -> None:
    """One attachment of the console conversation's turn ``turn_id``, kept by ``store``."""
    await store.open()
    try:
        await store.add_media(CONSOLE, turn_id, [ATTACHMENT], MEDIA_BUDGET)
    finally:
        await store.close()


def sqlite_ids(path: Path, table: str) -> list[int]:
    con = sqlite3.connect(path)
    try:
        return [i for (i,) in con.execute(f"SELECT id FROM {table} ORDER BY id")]
    finally:
        con.close()


async def postgres_ids(url: str, table: str) -> list[int]:
    con = await asyncpg.connect(url)
    try:
        return [int(r[0]) for r in await con.fetch(f"SELECT id FROM {table} ORDER BY id")]
    finally:
        await con.close()


async def test_a_conversation_moved_both_ways_goes_on_at_each_end(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The bot's own SQLite store (ids from 1, no gap above them) moved by the command
    into a fresh PostgreSQL, asked there, moved back into a new SQLite file and asked
    there: each new question is stored under an id above every copied one and answered
    with the whole history; a new attachment likewise."""
    path, back = tmp_path / "bot.db", tmp_path / "back.db"
    env = bot_env(tmp_path, fake_openai)
    await ask(env, QUESTIONS[0])
    await attach(SqliteStore(str(path)), 1)
    async with postgres_schema() as url:
        await move(f"sqlite:///{path}", url, tmp_path)
        await ask({**env, "DATABASE_URL": url}, QUESTIONS[1])
        assert await postgres_ids(url, "turns") == [1, 2, 3, 4]
        await attach(PostgresStore(url), 3)
        assert await postgres_ids(url, "media") == [1, 2]
        await move(url, f"sqlite:///{back}", tmp_path)
    await ask({**env, "DATABASE_URL": f"sqlite:///{back}"}, QUESTIONS[2])
    assert sqlite_ids(back, "turns") == [1, 2, 3, 4, 5, 6]
    await attach(SqliteStore(str(back)), 5)
    assert sqlite_ids(back, "media") == [1, 2, 3]
    history = [m["content"] for m in fake_openai.chat_requests[-1]["messages"]]
    assert [m.partition("\n")[0] for m in history[1::2]] == list(QUESTIONS)  # [0]: system
    assert ATTACHMENT.text in history[1] and ATTACHMENT.text in history[3]


@pytest.mark.parametrize("runs", ["once", "twice", "resumed"])
async def test_the_next_message_after_a_copy_takes_a_new_id(
    fake_openai: FakeOpenAI, tmp_path: Path, runs: str
) -> None:
    """Copied ids up to the source's own mark (none handed out and reset away), by one
    run, two runs, or an interrupted run finished by the next: the console's next
    question and a new attachment in PostgreSQL take the ids after the copied ones."""
    path = tmp_path / "small.db"
    await new_sqlite(path)
    seed(path, SMALL_TURNS, resets_above=0)
    source = f"sqlite:///{path}"
    async with postgres_schema() as url:
        if runs == "resumed":
            quiet = _quiet(tmp_path)
            await interrupted_copy(path, url, SMALL_BATCH, "turns", batches=2, quiet=quiet)
        await move(source, url, tmp_path)
        if runs == "twice":
            again = await move(source, url, tmp_path)
            assert f"turns: 0 copied, {SMALL_TURNS:,} already there" in again
        await ask({**bot_env(tmp_path, fake_openai), "DATABASE_URL": url}, QUESTIONS[0])
        last = SMALL_TURNS  # the question and its answer come next
        assert (await postgres_ids(url, "turns"))[-3:] == [last, last + 1, last + 2]
        await attach(PostgresStore(url), last + 1)
        last = SMALL_TURNS // MEDIA_EVERY
        assert (await postgres_ids(url, "media"))[-2:] == [last, last + 1]


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
            ("usage", 0, USAGE_ROWS),
            ("turns", 0, SMALL_TURNS),
            ("media", 0, SMALL_TURNS // MEDIA_EVERY),
        ]
        await assert_same(path, url)


async def test_an_interrupted_copy_is_finished_by_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, SMALL_TURNS)
    async with postgres_schema() as url:
        await interrupted_copy(path, url, SMALL_BATCH, "turns", batches=2, quiet=_quiet(tmp_path))
        assert await postgres_count(url, "turns") == 2 * SMALL_BATCH
        rest = await migrate_store(
            f"sqlite:///{path}", url, batch_rows=SMALL_BATCH, progress_to=_quiet(tmp_path)
        )
        turns = rest.tables[TABLES.index(TURNS)]
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
        await assert_same(path, url)
        await migrate_store(url, f"sqlite:///{back}", progress_to=_quiet(tmp_path))
        await assert_same(back, url)
    store = SqliteStore(str(back))
    await store.open()
    try:
        assert await store.add_user_turn("console:x", user("new")) == SMALL_TURNS + RESETS_ABOVE + 1
    finally:
        await store.close()
    con = sqlite3.connect(back)
    try:
        marks = dict(con.execute("SELECT name, seq FROM sqlite_sequence"))
    finally:
        con.close()
    assert marks["media"] == SMALL_TURNS // MEDIA_EVERY + RESETS_ABOVE


async def test_small_batches_page_through_every_key_and_resume_both_ways(
    tmp_path: Path,
) -> None:
    """Batches of 7 rows: the ledger's six-column key (a boolean in it) and the
    attachments are read page after page, a copy stopped inside the ledger is
    finished by the next run, and the copy goes back into SQLite the same way."""
    path = tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, TINY_TURNS)
    back = tmp_path / "back.db"
    async with postgres_schema() as url:
        await interrupted_copy(path, url, TINY_BATCH, "usage", batches=3, quiet=_quiet(tmp_path))
        assert await postgres_count(url, "usage") == 3 * TINY_BATCH
        rest = await migrate_store(
            f"sqlite:///{path}", url, batch_rows=TINY_BATCH, progress_to=_quiet(tmp_path)
        )
        usage = rest.tables[TABLES.index(USAGE)]
        assert (usage.copied, usage.skipped) == (USAGE_ROWS - 3 * TINY_BATCH, 3 * TINY_BATCH)
        await assert_same(path, url)
        await migrate_store(
            url, f"sqlite:///{back}", batch_rows=TINY_BATCH, progress_to=_quiet(tmp_path)
        )
        await assert_same(back, url)


async def test_a_database_the_bot_already_used_is_not_mixed_into(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, SMALL_TURNS)
    async with postgres_schema() as url:
        store = PostgresStore(url)
        await store.open()
        await store.add_user_turn("slack:T1:C1:", user("its-own"))  # takes turn id 1
        await store.close()
        before = await postgres_snapshot(url, path)
        with pytest.raises(MigrationError) as raised:
            await migrate_store(f"sqlite:///{path}", url, progress_to=_quiet(tmp_path))
        assert "migrate-store: --to: turns id (1,) already holds another row" in str(raised.value)
        assert await postgres_snapshot(url, path) == before


async def test_attachments_the_bot_already_kept_are_not_mixed_into(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, SMALL_TURNS)
    async with postgres_schema() as url:
        store = PostgresStore(url)
        await store.open()  # an attachment of its own takes media id 1
        await store.add_media("slack:T1:C1:", 1, [Media("text", "its-own.txt", "x")], 10**6)
        await store.close()
        before = await postgres_snapshot(url, path)
        with pytest.raises(MigrationError) as raised:
            await migrate_store(f"sqlite:///{path}", url, progress_to=_quiet(tmp_path))
        assert "migrate-store: --to: media id (1,) already holds another row" in str(raised.value)
        # Not even the settings, dedupe rows, ledger and turns that come before media.
        assert await postgres_snapshot(url, path) == before


REFUSED = "error: migrate-store: --to: turns id (1,) already holds another row; "


async def test_a_refused_copy_leaves_the_database_the_bot_used_as_it_was(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The console's question and answer in a fresh PostgreSQL (turns 1 and 2), then
    another store copied into it by the command: one line, exit 2, and not one row of
    any copied table nor an id mark changed."""
    path = tmp_path / "small.db"
    await new_sqlite(path)
    seed(path, TINY_TURNS)
    async with postgres_schema() as url:
        await ask({**bot_env(tmp_path, fake_openai), "DATABASE_URL": url}, QUESTIONS[0])
        before = await postgres_snapshot(url, path)
        args = ["migrate-store", "--from", f"sqlite:///{path}", "--to", url]
        code, _, err = await run_bot(args, bot_env(tmp_path))
        assert code == 2 and REFUSED in err, err
        assert await postgres_snapshot(url, path) == before
        assert err.startswith(REFUSED) and len(err.splitlines()) == 1, err  # no progress line


async def test_a_refused_copy_back_leaves_the_sqlite_file_the_bot_used_as_it_was(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The same the other way: PostgreSQL copied into a SQLite file the console used."""
    path, used = tmp_path / "small.db", tmp_path / "bot.db"
    await new_sqlite(path)
    seed(path, TINY_TURNS)
    await ask(bot_env(tmp_path, fake_openai), QUESTIONS[0])  # into bot.db
    before = sqlite_snapshot(used)
    async with postgres_schema() as url:
        await move(f"sqlite:///{path}", url, tmp_path)
        args = ["migrate-store", "--from", url, "--to", f"sqlite:///{used}"]
        code, _, err = await run_bot(args, bot_env(tmp_path))
    assert code == 2 and REFUSED in err, err
    assert sqlite_snapshot(used) == before
    assert err.startswith(REFUSED) and len(err.splitlines()) == 1, err  # no progress line


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
    assert [t.copied for t in done.tables] == [0] * len(TABLES)


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
        (
            "sqlite:///{tmp}/bot.db",
            f"postgresql://bot:{PASSWORD}@127.0.0.1:99999/db",
            "error: migrate-store: --to: 'postgresql://***@127.0.0.1:99999/db': port '99999' "
            "is not a number from 1 to 65535",
        ),
        (
            "sqlite:///{tmp}/bot.db",
            f"postgresql://bot:LEAK@{PASSWORD}@127.0.0.1:1/db",
            "error: migrate-store: --to: 'postgresql://***@127.0.0.1:1/db': its user or "
            "password holds an @ that is not percent-encoded; write it as %40",
        ),
        (
            "sqlite:///{tmp}/bot.db",
            f"postgresql://bot:{PASSWORD}@127.0.0.1:1",
            "error: migrate-store: --to: 'postgresql://***@127.0.0.1:1' names no database",
        ),
        (
            f"postgresql://bot:{PASSWORD}@127.0.0.1:1/",
            "sqlite:///{tmp}/new.db",
            "error: migrate-store: --from: 'postgresql://***@127.0.0.1:1/' names no database",
        ),
    ],
    ids=[
        "unreachable-target",
        "missing-source",
        "unsupported-source",
        "memory",
        "same",
        "port-too-big",
        "second-at",
        "no-target-database",
        "no-source-database",
    ],
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


async def interrupted_copy(
    path: Path, url: str, batch_rows: int, table: str, *, batches: int, quiet: io.StringIO
) -> None:
    """Copy ``path`` into ``url`` and stop it after ``batches`` batches of ``table``."""
    seen = 0

    def stop(copied_table: str, rows: int) -> None:
        nonlocal seen
        seen += copied_table == table
        if seen == batches:
            raise Interrupted

    with pytest.raises(Interrupted):
        await migrate_store(
            f"sqlite:///{path}", url, batch_rows=batch_rows, progress_to=quiet, after_batch=stop
        )


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
