"""Behaviour of both Store backends, plus SQLite persistence and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError, StartupError
from bot.store import Store
from bot.types import Turn
from fakes.disk_stall import WriterGate
from storage import MemoryStore, SqliteStore, open_store, sqlite_ops
from storage.migrations import MIGRATIONS, SCHEMA_VERSION, SEEN_RETENTION_S
from storage.postgres import PostgresStore
from storage.sqlite import BUSY_TIMEOUT_MS
from storage.turn_cache import TurnCache
from tests.store_support import (
    CONV,
    KINDS,
    OTHER,
    AnyStore,
    FakeClock,
    answer,
    opened_store,
    user,
)

END = 10**12  # an `upto` after every turn
DAY = 24 * 3600.0
HANG_GUARD_S = 10.0  # a test that would hang fails after this instead


def contents(turns: list[Turn]) -> list[str]:
    return [t.content for t in turns]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=KINDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[AnyStore]:
    async with opened_store(request.param, tmp_path, clock) as s:
        yield s


# --- behaviour shared by both backends ------------------------------------------------


async def test_redelivered_message_is_stored_once(store: Store) -> None:
    first = await store.add_user_turn(CONV, user("m1", "one"))
    again = await store.add_user_turn(CONV, user("m1", "one again"))
    assert isinstance(first, int)
    assert again is None
    assert contents(await store.recent_turns(CONV, END, 10)) == ["one"]


async def test_same_message_id_in_another_conversation_is_new(store: Store) -> None:
    assert await store.add_user_turn(CONV, user("m1")) is not None
    assert await store.add_user_turn(OTHER, user("m1")) is not None


async def test_claim_shares_dedupe_with_user_turns(store: Store) -> None:
    assert await store.claim(CONV, "cmd1") is True
    assert await store.claim(CONV, "cmd1") is False
    assert await store.add_user_turn(CONV, user("cmd1")) is None
    assert await store.add_user_turn(CONV, user("m2")) is not None
    assert await store.claim(CONV, "m2") is False
    assert await store.has_turns(CONV)
    assert contents(await store.recent_turns(CONV, END, 10)) == ["hi"]


async def test_seen_reads_what_was_stored_or_claimed_and_writes_nothing(store: Store) -> None:
    assert not await store.seen(CONV, "m1")
    assert not await store.seen(CONV, "m1")  # asking did not record it
    assert await store.add_user_turn(CONV, user("m1")) is not None
    assert await store.claim(CONV, "cmd1")
    assert await store.seen(CONV, "m1") and await store.seen(CONV, "cmd1")
    assert not await store.seen(OTHER, "m1")


async def test_turns_without_message_id_are_never_deduplicated(store: Store) -> None:
    a = await store.add_user_turn(CONV, user(None, "a"))
    b = await store.add_user_turn(CONV, user(None, "b"))
    assert a is not None and b is not None and a != b
    assert contents(await store.recent_turns(CONV, END, 10)) == ["a", "b"]


async def test_concurrent_redeliveries_store_one_turn(store: Store) -> None:
    results = await asyncio.gather(*(store.add_user_turn(CONV, user("m1")) for _ in range(20)))
    assert len([r for r in results if r is not None]) == 1
    assert len(await store.recent_turns(CONV, END, 100)) == 1


async def test_answer_sorts_after_its_question_even_when_stored_late(store: Store) -> None:
    u1 = await store.add_user_turn(CONV, user("m1", "u1"))
    u2 = await store.add_user_turn(CONV, user("m2", "u2"))
    assert u1 is not None and u2 is not None
    await store.add_assistant_turn(CONV, answer(u1, "a1"))
    assert contents(await store.recent_turns(CONV, u2, 10)) == ["u1", "a1", "u2"]
    assert contents(await store.recent_turns(CONV, u1, 10)) == ["u1", "a1"]
    await store.add_assistant_turn(CONV, answer(u2, "a2"))
    assert contents(await store.recent_turns(CONV, u2, 10)) == ["u1", "a1", "u2", "a2"]
    assert contents(await store.recent_turns(CONV, u1, 10)) == ["u1", "a1"]


async def test_answer_without_reply_to_sorts_by_arrival(store: Store) -> None:
    u1 = await store.add_user_turn(CONV, user("m1", "u1"))
    assert u1 is not None
    a = await store.add_assistant_turn(CONV, answer(None, "note"))
    u2 = await store.add_user_turn(CONV, user("m2", "u2"))
    assert u2 is not None and a is not None and u1 < a < u2
    assert contents(await store.recent_turns(CONV, u2, 10)) == ["u1", "note", "u2"]
    assert contents(await store.recent_turns(CONV, u1, 10)) == ["u1"]


async def test_limit_keeps_the_newest_turns_oldest_first(store: Store) -> None:
    last = 0
    for i in range(10):
        uid = await store.add_user_turn(CONV, user(f"m{i}", f"u{i}"))
        assert uid is not None
        await store.add_assistant_turn(CONV, answer(uid, f"a{i}"))
        last = uid
    assert contents(await store.recent_turns(CONV, last, 3)) == ["a8", "u9", "a9"]
    assert contents(await store.recent_turns(CONV, last, 1)) == ["a9"]
    assert await store.recent_turns(CONV, last, 0) == []
    assert len(await store.recent_turns(CONV, last, 1000)) == 20


async def test_turn_fields_round_trip(store: Store) -> None:
    sent = user("m1", "héllo 🌍", tokens=7)
    uid = await store.add_user_turn(CONV, sent)
    assert uid is not None
    reply = answer(uid, "hi there", tokens=3)
    aid = await store.add_assistant_turn(CONV, reply)
    assert aid is not None
    got = await store.recent_turns(CONV, uid, 10)
    assert got == [
        Turn(
            role="user",
            content="héllo 🌍",
            tokens=7,
            author_id="u1",
            author_name="Ann",
            message_id="m1",
            created_at=1_700_000_000.5,
            id=uid,
        ),
        Turn(role="assistant", content="hi there", tokens=3, id=aid, reply_to=uid),
    ]


async def test_wrong_role_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.add_user_turn(CONV, answer(None))
    with pytest.raises(ValueError):
        await store.add_assistant_turn(CONV, user("m1"))
    assert not await store.has_turns(CONV)
    assert await store.claim(CONV, "m1") is True  # the refused turn claimed nothing


async def test_has_turns(store: Store) -> None:
    assert not await store.has_turns(CONV)
    await store.claim(CONV, "m0")
    assert not await store.has_turns(CONV)
    await store.add_user_turn(CONV, user("m1"))
    assert await store.has_turns(CONV)
    assert not await store.has_turns(OTHER)


async def test_reset_forgets_turns_but_keeps_dedupe_and_settings(store: Store) -> None:
    u1 = await store.add_user_turn(CONV, user("m1", "old"))
    assert u1 is not None
    await store.add_assistant_turn(CONV, answer(u1, "old answer"))
    await store.set_system_prompt(CONV, "be brief")
    await store.reset(CONV)
    assert not await store.has_turns(CONV)
    assert await store.recent_turns(CONV, END, 10) == []
    assert await store.add_user_turn(CONV, user("m1", "redelivered")) is None
    assert await store.get_system_prompt(CONV) == "be brief"
    u2 = await store.add_user_turn(CONV, user("m2", "new"))
    assert u2 is not None and u2 > u1  # ids are never reused
    assert contents(await store.recent_turns(CONV, u2, 10)) == ["new"]


async def test_system_prompt_set_replace_clear(store: Store) -> None:
    assert await store.get_system_prompt(CONV) is None
    await store.set_system_prompt(CONV, "you are a pirate")
    await store.set_system_prompt(CONV, "you are a poet")
    assert await store.get_system_prompt(CONV) == "you are a poet"
    assert await store.get_system_prompt(OTHER) is None
    await store.set_system_prompt(CONV, None)
    assert await store.get_system_prompt(CONV) is None
    await store.set_system_prompt(CONV, None)  # clearing twice is fine
    assert await store.get_system_prompt(CONV) is None


async def test_load_context_is_the_prompt_and_the_recent_turns_in_one_call(
    store: Store,
) -> None:
    empty = await store.load_context(CONV, END, 10)
    assert empty.system_prompt is None and empty.turns == []
    u1 = await store.add_user_turn(CONV, user("m1", "first"))
    assert u1 is not None
    answer_id = await store.add_assistant_turn(CONV, answer(u1, "first answer"))
    assert answer_id is not None
    await store.mark_delivered(CONV, answer_id)
    u2 = await store.add_user_turn(CONV, user("m2", "second"))
    assert u2 is not None
    await store.set_system_prompt(CONV, "be brief")
    for upto, limit in ((u2, 10), (u2, 2), (u1, 10), (u2, 0)):
        loaded = await store.load_context(CONV, upto, limit)
        assert loaded.system_prompt == "be brief"
        assert loaded.turns == await store.recent_turns(CONV, upto, limit)
    assert contents((await store.load_context(CONV, u2, 10)).turns) == [
        "first",
        "first answer",
        "second",
    ]
    assert (await store.load_context(OTHER, END, 10)).system_prompt is None


async def test_conversations_are_isolated(store: Store) -> None:
    a = await store.add_user_turn(CONV, user("m1", "mine"))
    b = await store.add_user_turn(OTHER, user("m1", "theirs"))
    assert a is not None and b is not None
    await store.add_assistant_turn(OTHER, answer(b, "their answer"))
    assert contents(await store.recent_turns(CONV, END, 10)) == ["mine"]
    assert contents(await store.recent_turns(OTHER, END, 10)) == ["theirs", "their answer"]
    await store.reset(OTHER)
    assert contents(await store.recent_turns(CONV, END, 10)) == ["mine"]
    assert await store.recent_turns(OTHER, END, 10) == []


async def test_many_conversations_at_once(store: Store) -> None:
    async def talk(conv: str) -> None:
        for i in range(5):
            uid = await store.add_user_turn(conv, user(f"m{i}", f"{conv} u{i}"))
            assert uid is not None
            await store.add_assistant_turn(conv, answer(uid, f"{conv} a{i}"))
            turns = await store.recent_turns(conv, uid, 100)
            assert len(turns) == 2 * i + 2

    convs = [f"slack:T1:C{n}:ts:" for n in range(64)]
    await asyncio.gather(*(talk(c) for c in convs))
    seen_ids: set[int] = set()
    for conv in convs:
        turns = await store.recent_turns(conv, END, 100)
        expected = [f"{conv} {k}{i}" for i in range(5) for k in ("u", "a")]
        assert contents(turns) == expected
        seen_ids.update(t.id for t in turns)
    assert len(seen_ids) == 64 * 10


async def test_old_dedupe_rows_are_pruned(store: AnyStore, clock: FakeClock) -> None:
    await store.claim(CONV, "old")
    clock.now += SEEN_RETENTION_S - DAY
    await store.claim(CONV, "young")
    clock.now += 2 * DAY
    assert await store.prune_seen() == 1
    assert await store.claim(CONV, "old") is True
    assert await store.claim(CONV, "young") is False


async def test_pruning_happens_on_its_own(store: Store, clock: FakeClock) -> None:
    await store.claim(CONV, "old")
    clock.now += SEEN_RETENTION_S + DAY
    await store.claim(CONV, "trigger")  # more than the prune interval later
    assert await store.add_user_turn(CONV, user("old")) is not None


# --- a random walk checked against a plain-list model -----------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("user"), st.sampled_from(["c1", "c2"]), st.integers(0, 12)),
        st.tuples(st.just("answer"), st.sampled_from(["c1", "c2"]), st.integers(0, 20)),
        st.tuples(st.just("deliver"), st.sampled_from(["c1", "c2"]), st.integers(0, 20)),
        st.tuples(st.just("prompt"), st.sampled_from(["c1", "c2"]), st.integers(0, 2)),
        st.tuples(st.just("reset"), st.sampled_from(["c1", "c2"]), st.just(0)),
        st.tuples(st.just("read"), st.sampled_from(["c1", "c2"]), st.integers(0, 6)),
    ),
    min_size=15,
    max_size=60,
)


class Model:
    """The obviously-correct reference: every turn in a list, sorted on read."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, int, Turn]] = []  # conv, anchor, id, turn
        self.seen: set[tuple[str, str]] = set()
        self.last_id = 0
        self.user_ids: list[int] = []
        self.undelivered: dict[int, str] = {}  # answer id -> conversation
        self.prompts: dict[str, str | None] = {}

    def add(self, conv: str, turn: Turn, anchor: int | None) -> int:
        self.last_id += 1
        own = self.last_id
        self.rows.append((conv, own if anchor is None else anchor, own, turn))
        if not turn.delivered:
            self.undelivered[own] = conv
        return self.last_id

    def deliver(self, turn_id: int) -> None:
        self.rows = [
            (c, a, i, replace(t, delivered=True) if i == turn_id else t) for c, a, i, t in self.rows
        ]
        self.undelivered.pop(turn_id, None)

    def has_user_turn(self, conv: str, turn_id: int) -> bool:
        return any(c == conv and i == turn_id and t.role == "user" for c, _, i, t in self.rows)

    def recent(self, conv: str, upto: int, limit: int) -> list[str]:
        mine = sorted(
            (a, i, t.content) for c, a, i, t in self.rows if c == conv and a <= upto and t.delivered
        )
        return [text for _, _, text in mine[-limit:]] if limit > 0 else []


async def _walk(store: Store, ops: list[tuple[str, str, int]]) -> None:
    model = Model()
    for step, (op, conv, n) in enumerate(ops):
        if op == "user":
            mid = f"m{n}"
            got = await store.add_user_turn(conv, user(mid, f"u{step}"))
            if (conv, mid) in model.seen:
                assert got is None
            else:
                model.seen.add((conv, mid))
                assert got == model.add(conv, user(mid, f"u{step}"), None)
                model.user_ids.append(got)
        elif op == "answer" and model.user_ids:
            reply_to = model.user_ids[n % len(model.user_ids)]
            made = replace(answer(reply_to, f"a{step}"), delivered=n % 3 != 0)
            got_id = await store.add_assistant_turn(conv, made)
            if model.has_user_turn(conv, reply_to):
                assert got_id == model.add(conv, made, reply_to)
            else:  # its question was reset away, or lives in another conversation
                assert got_id is None
        elif op == "deliver" and model.undelivered:
            answer_id = sorted(model.undelivered)[n % len(model.undelivered)]
            await store.mark_delivered(model.undelivered[answer_id], answer_id)
            model.deliver(answer_id)
        elif op == "prompt":
            prompt = None if n == 0 else f"p{step}"
            await store.set_system_prompt(conv, prompt)
            model.prompts[conv] = prompt
        elif op == "reset":
            await store.reset(conv)
            model.rows = [r for r in model.rows if r[0] != conv]
            model.undelivered = {i: c for i, c in model.undelivered.items() if c != conv}
        elif op == "read":
            upto = model.user_ids[-1 - n % len(model.user_ids)] if model.user_ids else END
            await _check(store, model, conv, upto, n)
        if step % 2:  # every other step, the whole conversation as it stands
            await _check(store, model, conv, END, 6)


async def _check(store: Store, model: Model, conv: str, upto: int, limit: int) -> None:
    got = await store.load_context(conv, upto, limit)
    assert contents(got.turns) == model.recent(conv, upto, limit)
    assert got.system_prompt == model.prompts.get(conv)
    if isinstance(store, SqliteStore):  # the turn cache hands out what SQLite holds
        assert got.turns == _queried(store, conv, upto, limit)


def _queried(store: SqliteStore, conv: str, upto: int, limit: int) -> list[Turn]:
    """recent_turns straight from the file, through a connection of its own."""
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        rows = db.execute(sqlite_ops.SQL_RECENT, (conv, upto, limit)).fetchall() if limit else []
    return [sqlite_ops.row_to_turn(row) for row in reversed(rows)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS, kind=st.sampled_from(["memory", "sqlite", "sqlite-small-cache", "postgres"]))
def test_random_operations_match_the_model(ops: list[tuple[str, str, int]], kind: str) -> None:
    async def run(directory: str) -> None:
        if kind == "postgres":  # a fresh schema for every example
            async with opened_store(kind, Path(directory), time.time) as shared:
                await _walk(shared, ops)
            return
        store: AnyStore = MemoryStore()
        if kind != "memory":
            # A small cache: trimming, eviction and reads past what it holds all happen.
            small = TurnCache(max_turns=5, per_conversation=3) if kind.endswith("cache") else None
            store = SqliteStore(str(Path(directory) / "walk.db"), turn_cache=small)
        await store.open()
        try:
            await _walk(store, ops)
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(directory))


@pytest.fixture
async def two_stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two instances on one file, as two bot processes sharing a database."""
    path = str(tmp_path / "shared.db")
    first, second = SqliteStore(path), SqliteStore(path)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def test_turns_written_by_another_connection_are_seen(
    two_stores: tuple[SqliteStore, SqliteStore],
) -> None:
    """Each instance's cached history follows the other's writes."""
    first, second = two_stores
    u1 = await first.add_user_turn(CONV, user("m1", "one"))
    assert u1 is not None
    assert contents(await first.recent_turns(CONV, END, 10)) == ["one"]  # now held
    u2 = await second.add_user_turn(CONV, user("m2", "two"))
    assert u2 is not None
    await second.set_system_prompt(CONV, "from the other one")
    got = await first.load_context(CONV, END, 10)
    assert contents(got.turns) == ["one", "two"]
    assert got.system_prompt == "from the other one"
    await second.reset(CONV)
    assert await first.recent_turns(CONV, END, 10) == []


# --- SQLite only -----------------------------------------------------------------------


async def test_sqlite_keeps_everything_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.db")
    first = SqliteStore(path)
    await first.open()
    u1 = await first.add_user_turn(CONV, user("m1", "remember me"))
    assert u1 is not None
    await first.add_assistant_turn(CONV, answer(u1, "I will"))
    await first.claim(CONV, "cmd")
    await first.set_system_prompt(CONV, "be kind")
    await first.close()
    await first.close()  # twice is fine

    second = SqliteStore(path)
    await second.open()
    try:
        assert contents(await second.recent_turns(CONV, END, 10)) == ["remember me", "I will"]
        assert await second.add_user_turn(CONV, user("m1")) is None
        assert await second.claim(CONV, "cmd") is False
        assert await second.get_system_prompt(CONV) == "be kind"
        u2 = await second.add_user_turn(CONV, user("m2"))
        assert u2 is not None and u2 > u1
    finally:
        await second.close()
    assert _integrity(path) == "ok"


async def test_sqlite_uses_wal_and_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "chat.db"
    store = SqliteStore(str(path))
    await store.open()
    await store.add_user_turn(CONV, user("m1"))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    await store.close()


async def test_sqlite_refuses_use_before_open(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "chat.db"))
    with pytest.raises(RuntimeError, match="not open"):
        await store.has_turns(CONV)


async def test_sqlite_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    store = SqliteStore(str(path))
    await store.open()
    assert await store.add_user_turn(CONV, user("m1")) is not None
    await store.close()
    assert _user_version(path) == SCHEMA_VERSION
    assert _integrity(str(path)) == "ok"


async def test_sqlite_migrates_the_previous_schema_keeping_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _build_schema(path, 2)  # v2: dedupe without "done"; v3 and later steps added on open
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO turns (id, conversation, role, content, tokens, message_id,"
            " created_at, reply_to, anchor) VALUES"
            " (1, ?, 'user', 'old q', 3, 'm1', 1.0, NULL, 1),"
            " (2, ?, 'assistant', 'old a', 4, NULL, 2.0, 1, 1)",
            (CONV, CONV),
        )
        db.execute("INSERT INTO conversation_settings VALUES (?, 'old prompt')", (CONV,))
        db.execute(  # v2 dedupe; columns named: later steps add more
            "INSERT INTO seen (conversation, message_id, at) VALUES (?, 'm1', ?)",
            (CONV, time.time()),
        )
    db.close()

    store = SqliteStore(str(path))
    await store.open()
    try:
        assert _user_version(path) == SCHEMA_VERSION
        assert await store.pending_turn(CONV, "m1") is None  # old rows count as finished
        assert contents(await store.recent_turns(CONV, END, 10)) == ["old q", "old a"]
        assert await store.get_system_prompt(CONV) == "old prompt"
        assert await store.add_user_turn(CONV, user("m1")) is None  # backfilled dedupe
        u2 = await store.add_user_turn(CONV, user("m2", "new q"))
        assert u2 == 3
        assert contents(await store.recent_turns(CONV, u2, 10)) == ["old q", "old a", "new q"]
    finally:
        await store.close()
    assert _integrity(str(path)) == "ok"


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    _build_schema(path, SCHEMA_VERSION)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    store = SqliteStore(str(path))
    with pytest.raises(StartupError, match="newer"):
        await store.open()
    assert _user_version(path) == SCHEMA_VERSION + 1


async def test_sqlite_two_instances_share_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    a, b = SqliteStore(path), SqliteStore(path)
    await asyncio.gather(a.open(), b.open())
    try:
        results = await asyncio.gather(
            *(s.add_user_turn(CONV, user(f"m{i % 10}")) for i in range(40) for s in (a, b))
        )
        assert len([r for r in results if r is not None]) == 10
        assert len(await b.recent_turns(CONV, END, 100)) == 10
    finally:
        await a.close()
        await b.close()


async def test_sqlite_cancelled_writes_leave_no_half_transaction(tmp_path: Path) -> None:
    path = str(tmp_path / "cancel.db")
    store = SqliteStore(path)
    await store.open()
    try:
        for round_ in range(5):
            tasks = [
                asyncio.create_task(store.add_user_turn(f"c{i}", user(f"r{round_}-{i}")))
                for i in range(30)
            ]
            for _ in range(round_ * 3 + 1):
                await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # The connection is not stuck inside a transaction: writes still work.
        assert await store.add_user_turn(CONV, user("after")) is not None
        with sqlite3.connect(path) as db:
            seen = set(db.execute("SELECT conversation, message_id FROM seen"))
            stored = set(db.execute("SELECT conversation, message_id FROM turns"))
            anchors_ok = db.execute(
                "SELECT COUNT(*) FROM turns WHERE role = 'user' AND anchor != id"
            ).fetchone()[0]
        db.close()
        assert seen == stored  # each message either fully stored or not at all
        assert anchors_ok == 0
    finally:
        await store.close()


async def test_sqlite_reads_do_not_queue_behind_the_writer(tmp_path: Path) -> None:
    # The writer is busy (a commit waiting on the disk, a checkpoint's fsync):
    # reads run on the event loop's own connection meanwhile; a write waits its turn
    # on the worker and returns once committed.
    store = SqliteStore(str(tmp_path / "inline.db"))
    await store.open()
    turn_id = await store.add_user_turn(CONV, user("m1"))
    assert turn_id is not None
    await store.set_system_prompt(CONV, "be brief")
    gate = WriterGate(HANG_GUARD_S)
    blocker = asyncio.create_task(store._in_worker(gate))
    write = asyncio.create_task(store.add_user_turn(CONV, user("m2", "later")))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            context = await store.load_context(CONV, turn_id, 10)
            assert await store.has_turns(CONV)
            assert await store.pending_turn(CONV, "m1") is not None  # not answered yet
            assert await store.get_system_prompt(CONV) == "be brief"
        assert contents(context.turns) == ["hi"]
        assert context.system_prompt == "be brief"
        assert not blocker.done() and not write.done()
    finally:
        gate.open()
        await blocker
        gate.remove()
    second = await write
    assert second is not None
    assert contents(await store.recent_turns(CONV, END, 10)) == ["hi", "later"]
    await store.close()


async def test_sqlite_waits_for_another_writer_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    # Another process holds the write lock. The store must wait for it on the
    # writer: waiting on the event loop's thread would stop everything,
    # here the very callback that releases the lock.
    path = str(tmp_path / "locked.db")
    store = SqliteStore(path)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute(
            "INSERT INTO conversation_settings (conversation, system_prompt) VALUES ('x', 'held')"
        )
        asyncio.get_running_loop().call_later(0.2, other.execute, "COMMIT")
        ticks = asyncio.create_task(ticker())
        async with asyncio.timeout(HANG_GUARD_S):
            turn_id = await store.add_user_turn(CONV, user("m1"))
            await store.set_system_prompt(CONV, "be brief")
        ticks.cancel()
        assert turn_id is not None
        # The loop ran on while the store waited (a wait on the loop's thread would
        # stall it for the whole busy timeout); a bound far above any scheduling noise.
        assert max(gaps) < BUSY_TIMEOUT_MS / 1000 / 2, max(gaps)
        assert other.in_transaction is False  # the write waited for the COMMIT
        assert contents(await store.recent_turns(CONV, END, 10)) == ["hi"]
        assert await store.get_system_prompt("x") == "held"
        assert await store.get_system_prompt(CONV) == "be brief"
    finally:
        other.close()
        await store.close()


async def test_sqlite_checkpoints_the_wal_in_the_background(tmp_path: Path) -> None:
    # The inline connection never checkpoints (an fsync on the event loop); the
    # worker does. Without it the WAL would hold every page written.
    path = tmp_path / "wal.db"
    store = SqliteStore(str(path), checkpoint_interval_s=0.0)
    await store.open()
    text = "x" * 8000
    try:
        for batch in range(30):
            for i in range(10):
                await store.add_user_turn(CONV, user(f"m{batch}-{i}", text))
            await asyncio.sleep(0.05)  # the writer gets to checkpoint
        written = 300 * len(text)
        wal = path.with_name(path.name + "-wal").stat().st_size
        assert wal < written / 3, (wal, written)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM turns").fetchone() == (300,)
    db.close()


async def test_sqlite_commits_never_checkpoint_on_their_own(tmp_path: Path) -> None:
    # SQLite's default would checkpoint (two fsyncs) inside the commit that fills
    # 1000 pages of WAL; the store checkpoints on its own schedule instead, so with
    # that schedule far off every page written is still in the WAL.
    path = tmp_path / "wal.db"
    store = SqliteStore(str(path), checkpoint_interval_s=3600.0)
    await store.open()
    try:
        for i in range(300):  # about 1,500 pages, each write committed on return
            await store.add_user_turn(CONV, user(f"m{i}", "x" * 16000))
        wal_pages = path.with_name(path.name + "-wal").stat().st_size // 4096
    finally:
        await store.close()
    assert wal_pages > 1500, wal_pages


# --- URLs ------------------------------------------------------------------------------


def test_open_store_understands_the_documented_urls() -> None:
    relative = open_store("sqlite:///data/bot.db")
    absolute = open_store("sqlite:////var/lib/bot/bot.db")
    in_memory = open_store("sqlite:///:memory:")
    assert isinstance(relative, SqliteStore) and relative.path == "data/bot.db"
    assert isinstance(absolute, SqliteStore) and absolute.path == "/var/lib/bot/bot.db"
    assert isinstance(in_memory, SqliteStore) and in_memory.path == ":memory:"
    assert isinstance(open_store("memory://"), MemoryStore)
    assert isinstance(open_store(" SQLite:///x.db "), SqliteStore)
    for url in ("postgresql://u:pw@db:5432/bot", "postgres://db/bot"):
        assert isinstance(open_store(url, pool_size=3), PostgresStore)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://db/bot",
        "postgresql://",
        "bot.db",
        "",
        "sqlite://host/bot.db",
        "sqlite:///",
        "memory://x",
    ],
)
def test_open_store_rejects_other_urls_clearly(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(url)
    assert caught.value.path == "storage.url"
    assert "sqlite:///" in caught.value.problem


def test_a_sqlite_url_with_options_is_refused_not_made_a_file_name(tmp_path: Path) -> None:
    """``sqlite:///x.db?password=...`` would have created a file of that name."""
    with pytest.raises(ConfigError) as caught:
        open_store(f"sqlite:///{tmp_path}/x.db?password=Hunter2secret")
    assert caught.value.path == "storage.url"
    assert "takes no ?options" in caught.value.problem
    assert "Hunter2secret" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


async def test_open_store_sqlite_creates_the_file_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///var/data/bot.db")
    await store.open()
    await store.close()
    assert (tmp_path / "var" / "data" / "bot.db").is_file()


# --- helpers ---------------------------------------------------------------------------


def _build_schema(path: Path, version: int) -> None:
    with sqlite3.connect(path) as db:
        for step in MIGRATIONS[:version]:
            for statement in step:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {version}")
    db.close()


def _user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    db.close()
    return version


def _integrity(path: str) -> str:
    with sqlite3.connect(path) as db:
        result = str(db.execute("PRAGMA integrity_check").fetchone()[0])
    db.close()
    return result


async def test_an_unreadable_data_version_means_no_cached_turns(
    two_stores: tuple[SqliteStore, SqliteStore],
) -> None:
    """If SQLite cannot say whether others wrote, nothing held is trusted."""

    class NoVersion:
        def __init__(self, con: sqlite3.Connection) -> None:
            self._con = con

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if "data_version" in sql:
                raise sqlite3.OperationalError("database is locked")
            return self._con.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self._con, name)

    store, other = two_stores
    u1 = await store.add_user_turn(CONV, user("m1", "one"))
    assert u1 is not None
    real = store._inline
    assert real is not None
    store._inline = NoVersion(real)  # type: ignore[assignment]
    try:
        assert contents(await store.recent_turns(CONV, END, 10)) == ["one"]
        await other.add_user_turn(CONV, user("m2", "two"))  # unseen by a cache
        assert contents(await store.recent_turns(CONV, END, 10)) == ["one", "two"]
    finally:
        store._inline = real
