"""What only the PostgreSQL store has: migrations under an advisory lock, a server
that fails at start or mid-message, and the bot running on it as a user starts it.

The behaviour it shares with SQLite and memory is tested on all three
(tests/test_storage.py, tests/test_recovery_store.py, tests/test_store_bounds.py).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.core import Core
from bot.errors import ConfigError, StartupError, StorageError, StoreFailure
from bot.redact import redact_url
from fakes.fake_openai import FakeOpenAI, reply
from storage import postgres
from storage.postgres import PostgresStore
from storage.postgres_sql import MIGRATION_LOCK, SCHEMA_VERSION, SQL_ADD_ANSWER
from tests.postgres_support import postgres_schema
from tests.store_support import CONV, answer, user
from tests.support import CoreFactory, RecordingSink, bot_env, message, run_bot, settle

PASSWORD = "pg-secret-password-98765"
# What asyncpg says for a call the server cut off mid-way: already one clear line.
DROPPED = (
    "connection was closed in the middle of operation: "
    "terminating connection due to administrator command"
)
INSTANCES = 6  # starting at once
POOL_SIZE = 2
WAIT_S = 10.0  # only reached if something hangs
SHORT_TIMEOUT_S = 0.5  # instead of the store's seconds, so a test waits little
DROP_ROUNDS = 10  # connections terminated, then used at once
CHECK_CONNECT_S = 5  # storage/alive.py's wait for a server in `check`


@pytest.fixture
async def schema_url() -> AsyncIterator[str]:
    async with postgres_schema() as url:
        yield url


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def rows(url: str, statement: str) -> list[tuple[object, ...]]:
    con = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await con.fetch(statement)]
    finally:
        await con.close()


async def waiting_for_a_lock(url: str, application: str) -> None:
    """Return once a session of ``application`` waits for a row lock."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE application_name = '{application}' AND wait_event_type = 'Lock'"
    )
    # Polled: another server session's state sends no event.
    while await rows(url, sql) == [(0,)]:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def test_instances_starting_at_once_migrate_once(schema_url: str) -> None:
    stores = [PostgresStore(schema_url) for _ in range(INSTANCES)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        ids = await asyncio.gather(
            *(s.add_user_turn(CONV, user(f"m{i}")) for i, s in enumerate(stores))
        )
        assert sorted(i for i in ids if i is not None) == list(range(1, INSTANCES + 1))
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    versions = await rows(schema_url, "SELECT version FROM chatbridge_schema ORDER BY version")
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]  # each step once


async def test_the_pool_never_opens_more_than_pool_size_connections(schema_url: str) -> None:
    name = f"bounded-{closed_port()}"
    store = PostgresStore(f"{schema_url}&application_name={name}", pool_size=POOL_SIZE)
    await store.open()
    try:
        await asyncio.gather(*(store.add_user_turn(CONV, user(f"m{i}")) for i in range(40)))
        await asyncio.gather(*(store.load_context(CONV, 10**12, 50) for _ in range(40)))
        sessions = await rows(
            schema_url, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'"
        )
        assert sessions == [(POOL_SIZE,)]  # grown to the bound under load, not past it
        assert len((await store.load_context(CONV, 10**12, 50)).turns) == 40
    finally:
        await store.close()


async def test_a_nul_character_in_an_answer_does_not_lose_it(schema_url: str) -> None:
    """SQLite keeps NUL, PostgreSQL's TEXT refuses it: the answer is stored anyway."""
    store = PostgresStore(schema_url)
    await store.open()
    try:
        asked = await store.add_user_turn(CONV, user("m1", "q"))
        answer_id = await store.add_assistant_turn(CONV, answer(asked, "a\x00b"))
        assert answer_id is not None
        turns = await store.recent_turns(CONV, 10**12, 10)
        assert [t.content for t in turns] == ["q", "a\ufffdb"]
    finally:
        await store.close()


async def test_a_connection_the_server_drops_fails_one_call_then_the_pool_reconnects(
    schema_url: str,
) -> None:
    name = f"dropped-{closed_port()}"
    store = PostgresStore(f"{schema_url}&application_name={name}", pool_size=1)
    await store.open()
    try:
        assert await store.add_user_turn(CONV, user("before")) is not None
        killed = await rows(
            schema_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = '{name}'",
        )
        assert killed == [(True,)]
        failures: list[Exception] = []
        stored = None
        for attempt in ("after", "after again"):  # a redelivery, as a platform would
            try:
                stored = await store.add_user_turn(CONV, user(attempt))
                break
            except StoreFailure as exc:  # what bot/ turns into StorageError
                failures.append(exc)
        assert stored is not None and len(failures) <= 1
        assert all("PostgreSQL" in str(f) for f in failures)
        assert len(await store.recent_turns(CONV, 10**12, 10)) == 2
    finally:
        await store.close()


async def test_a_newer_schema_is_refused_at_start(schema_url: str) -> None:
    store = PostgresStore(schema_url)
    await store.open()
    await store.close()
    await rows(schema_url, f"INSERT INTO chatbridge_schema (version) VALUES ({SCHEMA_VERSION + 1})")
    with pytest.raises(StartupError, match="newer than this version"):
        await PostgresStore(schema_url).open()


async def test_a_sequence_left_behind_its_rows_is_caught_up_at_start(schema_url: str) -> None:
    """Rows copied in with their ids by a migrate-store stopped before its end leave
    the sequence behind them: every new message would fail on a duplicate key."""
    first = PostgresStore(schema_url)
    await first.open()
    assert await first.add_user_turn(CONV, user("m1", "copied")) is not None
    await first.close()
    await rows(schema_url, "SELECT setval('turns_id', 1, false)")  # behind the copied row
    second = PostgresStore(schema_url)
    await second.open()
    try:
        assert await second.add_user_turn(CONV, user("m2", "new")) is not None
    finally:
        await second.close()


async def test_everything_is_kept_across_a_restart(schema_url: str) -> None:
    first = PostgresStore(schema_url)
    await first.open()
    asked = await first.add_user_turn(CONV, user("m1", "question"))
    answer_id = await first.add_assistant_turn(CONV, answer(asked, "answer"))
    assert answer_id is not None
    await first.mark_delivered(CONV, answer_id)
    await first.set_system_prompt(CONV, "be brief")
    await first.close()
    second = PostgresStore(schema_url)
    await second.open()
    try:
        got = await second.load_context(CONV, 10**12, 10)
        assert [t.content for t in got.turns] == ["question", "answer"]
        assert got.system_prompt == "be brief"
        assert await second.add_user_turn(CONV, user("m1")) is None  # still deduplicated
    finally:
        await second.close()


async def test_a_reset_also_forgets_an_answer_committed_while_it_waited(schema_url: str) -> None:
    """Another instance's answer holds its question (FOR SHARE) until it commits; the
    reset waits for it and must not leave that answer behind."""
    name = f"resetter-{closed_port()}"
    store = PostgresStore(f"{schema_url}&application_name={name}")
    await store.open()
    other = await asyncpg.connect(schema_url)
    try:
        asked = await store.add_user_turn(CONV, user("m1", "question"))
        transaction = other.transaction()
        await transaction.start()
        params = (CONV, "assistant", "late answer", 1, None, None, None, 0.0, True, asked, None)
        assert await other.fetchrow(SQL_ADD_ANSWER, *params) is not None  # not committed
        resetting = asyncio.create_task(store.reset(CONV))
        await asyncio.wait_for(waiting_for_a_lock(schema_url, name), WAIT_S)
        await transaction.commit()
        await asyncio.wait_for(resetting, WAIT_S)
        assert await store.has_turns(CONV) is False
    finally:
        await other.close()
        await store.close()


async def test_a_database_failure_while_a_message_arrives_is_a_storage_error(
    schema_url: str, core_factory: CoreFactory, fake_openai: FakeOpenAI
) -> None:
    store = PostgresStore(schema_url)
    await store.open()
    try:
        core: Core = await core_factory(store)
        fake_openai.script(reply("Stored at last."))
        await rows(schema_url, "ALTER TABLE seen RENAME TO seen_away")  # the server refuses
        sink = RecordingSink()
        msg = message("hello", message_id="pg1")
        with pytest.raises(StorageError, match="PostgreSQL"):
            await core.handle(msg, sink)
        assert fake_openai.request_count == 0  # nothing was taken
        await rows(schema_url, "ALTER TABLE seen_away RENAME TO seen")
        await core.handle(msg, sink)  # the redelivery is answered
        await settle(core)
        assert sink.texts == ["Stored at last."]
    finally:
        await store.close()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A loopback port that takes connections and never answers (a hung server)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def unusable_url(where: str) -> str:
    """A URL of the test server (or beside it) that a start must refuse."""
    if where == "closed port":
        return f"postgresql://bot:{PASSWORD}@127.0.0.1:{closed_port()}/test"
    if where == "unknown role":  # the server answers and refuses the login
        return f"postgresql://nobody_here:{PASSWORD}@127.0.0.1:5432/test"
    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/no_such_database"


@pytest.mark.parametrize("where", ["closed port", "unknown role", "unknown database"])
async def test_a_server_that_cannot_be_used_at_start_is_one_line_and_exit_2(
    tmp_path: Path, where: str, schema_url: str
) -> None:
    """``check`` fails as a start does, with the same line: it is how a user finds
    out before starting."""
    env = bot_env(tmp_path, DATABASE_URL=unusable_url(where))
    shown = []
    for command in ("check", "console"):
        code, out, err = await run_bot([command], env, b"hi\n")
        assert code == 2, err
        [line] = err.splitlines()  # no traceback
        assert line.startswith("error: config: storage.url (DATABASE_URL): cannot use PostgreSQL")
        assert PASSWORD not in out + err and "***@127.0.0.1" in line
        assert "instances:" not in out
        shown.append(line)
    assert shown[0] == shown[1]


async def test_check_on_a_server_that_never_answers_is_one_line_and_exit_2(
    tmp_path: Path, silent_port: int
) -> None:
    url = f"postgresql://bot:{PASSWORD}@127.0.0.1:{silent_port}/test"
    code, out, err = await run_bot(["check"], bot_env(tmp_path, DATABASE_URL=url))
    assert code == 2, err
    assert err.splitlines() == [
        "error: config: storage.url (DATABASE_URL): cannot use PostgreSQL at "
        f"'postgresql://***@127.0.0.1:{silent_port}/test': "
        f"the server did not answer within {CHECK_CONNECT_S} s"
    ]
    assert PASSWORD not in out + err


async def test_check_hides_the_database_password(tmp_path: Path, schema_url: str) -> None:
    url = schema_url.replace("@", f":{PASSWORD}@", 1)  # the test server trusts any password
    code, out, err = await run_bot(["check"], bot_env(tmp_path, DATABASE_URL=url))
    assert code == 0, err
    assert f"url: {redact_url(url)}" in out and "***@127.0.0.1" in out
    assert PASSWORD not in out + err


async def test_console_on_postgresql_answers_restarts_and_remembers(
    fake_openai: FakeOpenAI, tmp_path: Path, schema_url: str
) -> None:
    env = bot_env(tmp_path, fake_openai, DATABASE_URL=schema_url)
    fake_openai.script(reply("Noted: pineapple."), reply("It was pineapple."))
    code, out, err = await run_bot(["console"], env, b"remember the word pineapple\n")
    assert code == 0, err
    assert "Noted: pineapple." in out
    code, out, err = await run_bot(["console"], env, b"which word?\n")
    assert code == 0, err
    assert "It was pineapple." in out
    contents = [m["content"] for m in fake_openai.chat_requests[-1]["messages"]]
    assert contents[1:] == ["remember the word pineapple", "Noted: pineapple.", "which word?"]
    stored = await rows(schema_url, "SELECT role, content FROM turns ORDER BY id")
    assert [r[1] for r in stored] == [
        "remember the word pineapple",
        "Noted: pineapple.",
        "which word?",
        "It was pineapple.",
    ]


async def test_a_server_that_never_answers_at_start_says_so(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT_S", SHORT_TIMEOUT_S)
    url = f"postgresql://bot:{PASSWORD}@127.0.0.1:{silent_port}/test"
    with pytest.raises(ConfigError) as raised:
        await PostgresStore(url).open()
    assert raised.value.problem == (
        f"cannot use PostgreSQL at 'postgresql://***@127.0.0.1:{silent_port}/test': "
        f"the server did not answer within {SHORT_TIMEOUT_S} s"
    )


async def test_a_migration_lock_held_at_start_says_what_timed_out(
    schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session holds the lock instances migrate under (a stuck start)."""
    monkeypatch.setattr(postgres, "COMMAND_TIMEOUT_S", SHORT_TIMEOUT_S)
    holder = await asyncpg.connect(schema_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        with pytest.raises(ConfigError) as raised:
            await PostgresStore(schema_url).open()
    finally:
        await holder.close()
    assert raised.value.problem == (
        f"cannot use PostgreSQL at {redact_url(schema_url)!r}: a statement got no answer "
        f"within {SHORT_TIMEOUT_S} s (a lock held by another session, or a server that "
        "stopped answering)"
    )


async def test_a_call_waiting_on_a_lock_says_what_timed_out(
    schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "COMMAND_TIMEOUT_S", SHORT_TIMEOUT_S)
    store = PostgresStore(schema_url)
    await store.open()
    holder = await asyncpg.connect(schema_url)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE seen IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(StoreFailure) as raised:
                await store.add_user_turn(CONV, user("m1"))
    finally:
        await holder.close()
        await store.close()
    assert str(raised.value) == (
        f"PostgreSQL: a statement got no answer within {SHORT_TIMEOUT_S} s "
        "(a lock held by another session, or a server that stopped answering)"
    )


async def test_calls_on_connections_the_server_terminated_fail_in_plain_words(
    schema_url: str,
) -> None:
    """Used at once after the server ends them, pooled connections fail with the
    driver's internal state ("cannot switch to state 12; another operation (2) is in
    progress") about half the time; the failure says the connection was lost."""
    name = f"terminated-{closed_port()}"
    store = PostgresStore(f"{schema_url}&application_name={name}", pool_size=POOL_SIZE)
    await store.open()
    admin = await asyncpg.connect(schema_url)
    failures: list[str] = []
    try:
        for round_ in range(DROP_ROUNDS):
            calls = [store.add_user_turn(CONV, user(f"m{round_}-{i}")) for i in range(POOL_SIZE)]
            await asyncio.gather(*calls)  # every pooled connection in use once
            await admin.execute(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE application_name = '{name}'"
            )
            calls = [store.add_user_turn(CONV, user(f"n{round_}-{i}")) for i in range(POOL_SIZE)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            failures += [str(r) for r in results if isinstance(r, StoreFailure)]
    finally:
        await admin.close()
        await store.close()
    assert failures
    for failure in failures:
        assert "state" not in failure and "operation (" not in failure, failure
        assert failure in (f"PostgreSQL: {postgres.LOST}", f"PostgreSQL: {DROPPED}"), failure


async def test_a_refused_statement_in_the_console_is_one_line_without_the_row(
    fake_openai: FakeOpenAI, tmp_path: Path, schema_url: str
) -> None:
    """PostgreSQL's DETAIL line quotes the refused row, the person's message in it."""
    store = PostgresStore(schema_url)
    await store.open()  # the tables, so a constraint can be added
    await store.close()
    await rows(schema_url, "ALTER TABLE turns ADD CONSTRAINT no_plans CHECK (content <> 'plan')")
    env = bot_env(tmp_path, fake_openai, DATABASE_URL=schema_url)
    code, _, err = await run_bot(["console"], env, b"plan\n")
    assert code == 1, err  # bot/app.py's EXIT_STORAGE
    assert err.splitlines() == [
        "error: could not save your message (PostgreSQL: new row for relation "
        '"turns" violates check constraint "no_plans"); stopping.'
    ]
    assert fake_openai.request_count == 0
