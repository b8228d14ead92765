"""PostgreSQL: history loads at scale, and answers/s against SQLite (``python -m bench postgres``).

Needs a PostgreSQL server: ``BENCH_DATABASE_URL`` (else ``TEST_DATABASE_URL``, else
the loopback test server). Everything runs in a schema of its own, dropped after.

* ``pg_history_p50_ms`` / ``pg_history_p99_ms``: one answer's context, as
  ``history_p99_ms`` measures it on SQLite (``store.load_context(conv, upto, 200)``
  + ``bot.context.build_messages``), on a PostgreSQL store holding 1,000,000
  messages in 10,000 conversations (the quick run: 100,000 in 1,000): the same
  generated turns as bench/bench_history.py, interleaved across conversations.
  They go in by COPY (asyncpg's binary ``copy_records_to_table``) into the schema
  the store's migration made, indexes included; ``pg_history_load_*`` is the load
  alone. ``BENCH_PG_MESSAGES`` sets another size (100 messages per conversation).
* ``pg_answers_per_s`` / ``sqlite_answers_per_s`` / ``pg_vs_sqlite_answers_ratio``:
  the core ``bot.app.running_core`` builds, on each store in turn (phases rotated,
  so drift hits both alike), CONCURRENCY conversations each sending its next
  message when the previous answer is delivered, against one fake model process;
  ``*_bot_cpu_ms_per_answer`` is this process's CPU time per answer (the PostgreSQL
  server's own work is not in it, but shares the machine's cores).
* ``one_instance_answers_per_s`` / ``two_instances_answers_per_s`` and
  ``failover_s``: real ``python -m bot`` processes sharing the database
  (bench/bench_pg_instances.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import random
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from bot.config import DEFAULT_SYSTEM_PROMPT, Config, OpenAIConfig
from bot.context import build_messages
from bot.core import HISTORY_TURNS, Core
from bot.redact import redact_url
from bot.texts import Texts
from bot.tokens import token_counter_for
from bot.types import ConversationKey
from storage.postgres import PostgresStore

from . import bench_pg_instances
from .bench_history import (
    ASSISTANT_CHARS,
    SEED,
    USER_CHARS,
    Size,
    _pool,
    _rows,
    conversation_key,
    last_user_turn,
)
from .common import (
    AnswerWatch,
    Benchmark,
    FastSink,
    Results,
    RunOptions,
    Target,
    bench_config,
    bench_core,
    bench_message,
    core_cpu_seconds,
    fake_openai_process,
    percentile,
    rounded,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
URL_VARS = ("BENCH_DATABASE_URL", "TEST_DATABASE_URL")
SIZE_VAR = "BENCH_PG_MESSAGES"
FULL = Size(messages=1_000_000, conversations=10_000, served=0)
QUICK = Size(messages=100_000, conversations=1_000, served=0)
COPY_ROWS = 50_000  # per COPY: a few MB of records in memory at a time
TURN_COLUMNS = (
    "id", "conversation", "role", "content", "tokens", "author_id", "author_name",
    "message_id", "created_at", "reply_to", "anchor",
)  # fmt: skip
LOAD_SAMPLES, LOAD_SAMPLES_QUICK, LOAD_WARMUP = 2000, 500, 200
CONCURRENCY = 64
TTFT_MS, CHUNKS, CHUNK_INTERVAL_MS = 50.0, 20, 5.0
ANSWER_TEXT = "Hello from the fake model. This answer is streamed in small pieces."
ROUNDS, ROUNDS_QUICK = 3, 1
PHASE_S, PHASE_S_QUICK = 5.0, 1.5
WARMUP_S = 0.5
ANSWER_TIMEOUT_S = 10.0


def server_url() -> str:
    return next((os.environ[v] for v in URL_VARS if os.environ.get(v)), DEFAULT_URL)


def size_for(opts: RunOptions) -> Size:
    if opts.quick:
        return QUICK
    messages = int(os.environ.get(SIZE_VAR) or FULL.messages)
    return Size(messages=messages, conversations=max(messages // 100, 1), served=0)


async def run(opts: RunOptions) -> Results:
    """Seed and time history loads, then rotate the answer workload over both stores."""
    size = size_for(opts)
    async with scratch_schema(server_url()) as url:
        seeded_s = await seed(url, size)
        results: Results = {
            "pg_history_messages": size.messages,
            "pg_history_conversations": size.conversations,
            "pg_history_seed_s": rounded(seeded_s),
        }
        samples = LOAD_SAMPLES_QUICK if opts.quick else LOAD_SAMPLES
        results.update(await measure_loads(url, size, samples))
    async with scratch_schema(server_url()) as url:
        results.update(await answer_rates(url, opts.quick))
    with tempfile.TemporaryDirectory(prefix="bench-pg-instances-") as tmp:
        schema = functools.partial(scratch_schema, server_url())
        results.update(await bench_pg_instances.run(schema, Path(tmp), opts.quick))
    return results


@contextlib.asynccontextmanager
async def scratch_schema(url: str) -> AsyncIterator[str]:
    """A new schema on ``url``'s server; the URL that uses it; dropped afterwards."""
    schema = f"bench_{secrets.token_hex(6)}"
    try:
        admin = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"bench postgres: cannot use PostgreSQL at {redact_url(url)!r}: {exc} "
            f"(set {URL_VARS[0]})"
        ) from None
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        glue = "&" if "?" in url else "?"
        try:
            yield f"{url}{glue}search_path={schema}"
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await admin.close()


# -- history loads -----------------------------------------------------------------------


async def seed(url: str, size: Size) -> float:
    """The store's schema, then ``size`` generated turns by COPY; seconds taken."""
    store = PostgresStore(url)
    await store.open()  # the migration: tables and indexes as the bot has them
    await store.close()
    counter = token_counter_for(OpenAIConfig().model)
    users, assistants = _pool(counter, USER_CHARS), _pool(counter, ASSISTANT_CHARS)
    started = time.perf_counter()
    con = await asyncpg.connect(url)
    try:
        rows = _rows(size, users, assistants)
        while batch := list(itertools.islice(rows, COPY_ROWS)):
            await con.copy_records_to_table("turns", records=batch, columns=list(TURN_COLUMNS))
        await con.execute("SELECT setval('turns_id', $1)", size.messages)
        # As a database in use for a while is: hint bits and visibility map set, the
        # planner's statistics current, and the bulk write flushed before timing reads
        # (CHECKPOINT needs a superuser or pg_checkpoint; without it the flush may run on).
        await con.execute("VACUUM (ANALYZE) turns")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await con.execute("CHECKPOINT")
    finally:
        await con.close()
    return time.perf_counter() - started


async def measure_loads(url: str, size: Size, samples: int) -> Results:
    """Time load_context + build_messages for random conversations, as bench_history does."""
    store = PostgresStore(url)
    await store.open()
    counter = token_counter_for(OpenAIConfig().model)
    counter.warm()
    settings = OpenAIConfig()
    budget = settings.context_tokens - settings.max_output_tokens
    note = Texts("en").get("message_shortened")
    rng = random.Random(SEED)
    load_s: list[float] = []
    total_s: list[float] = []
    try:
        for index in range(LOAD_WARMUP + samples):
            conv = rng.randrange(size.conversations)
            key = conversation_key(conv).as_str()
            t0 = time.perf_counter()
            stored = await store.load_context(key, last_user_turn(size, conv), HISTORY_TURNS)
            t1 = time.perf_counter()
            system = stored.system_prompt or DEFAULT_SYSTEM_PROMPT
            build_messages(system, stored.turns, budget, counter, group=True, shortened_note=note)
            t2 = time.perf_counter()
            if index >= LOAD_WARMUP:
                load_s.append(t1 - t0)
                total_s.append(t2 - t0)
    finally:
        await store.close()
    return {
        "pg_history_p50_ms": rounded(percentile(total_s, 50) * 1000),
        "pg_history_p99_ms": rounded(percentile(total_s, 99) * 1000),
        "pg_history_load_p50_ms": rounded(percentile(load_s, 50) * 1000),
        "pg_history_load_p99_ms": rounded(percentile(load_s, 99) * 1000),
    }


# -- answers/s, PostgreSQL against SQLite -----------------------------------------------------


@dataclasses.dataclass(slots=True)
class Tally:
    """What the phases of one store saw."""

    counted: int = 0  # answers finished inside the measured windows
    seconds: float = 0.0  # the windows' length
    finished: int = 0  # answers finished at all (warm-up and tail included)
    failed: int = 0
    cpu_s: float = 0.0  # this process (the bot) while they ran

    def add(self, other: Tally) -> None:
        self.counted += other.counted
        self.seconds += other.seconds
        self.finished += other.finished
        self.failed += other.failed
        self.cpu_s += other.cpu_s

    @property
    def rate(self) -> float:
        return self.counted / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_answer(self) -> float:
        return self.cpu_s * 1000 / self.finished if self.finished else 0.0


async def answer_rates(url: str, quick: bool) -> Results:
    """Rotate the two stores; answers/s of each and their ratio."""
    rounds, seconds = (ROUNDS_QUICK, PHASE_S_QUICK) if quick else (ROUNDS, PHASE_S)
    tallies = {"sqlite": Tally(), "postgres": Tally()}
    async with fake_openai_process(
        ttft_ms=TTFT_MS, chunks=CHUNKS, chunk_interval_ms=CHUNK_INTERVAL_MS, text=ANSWER_TEXT
    ) as fake:
        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            base = bench_config(fake.base_url, Path(tmp) / "bot.db", CONCURRENCY)
            urls = {"sqlite": base.storage.url, "postgres": url}
            for number in range(rounds):
                for name in ("sqlite", "postgres") if number % 2 == 0 else ("postgres", "sqlite"):
                    storage = dataclasses.replace(base.storage, url=urls[name])
                    cfg = dataclasses.replace(base, storage=storage)
                    tallies[name].add(await one_phase(cfg, f"{name}{number}", seconds))
    pg, sqlite = tallies["postgres"], tallies["sqlite"]
    return {
        "pg_answers_per_s": rounded(pg.rate),
        "sqlite_answers_per_s": rounded(sqlite.rate),
        "pg_vs_sqlite_answers_ratio": rounded(pg.rate / sqlite.rate if sqlite.rate else 0.0),
        "pg_bot_cpu_ms_per_answer": rounded(pg.cpu_ms_per_answer),
        "sqlite_bot_cpu_ms_per_answer": rounded(sqlite.cpu_ms_per_answer),
        "pg_answer_failures": pg.failed + sqlite.failed,
    }


async def one_phase(cfg: Config, tag: str, seconds: float) -> Tally:
    """CONCURRENCY conversations answering back to back for ``seconds`` after a warm-up."""
    async with bench_core(cfg) as (core, watch):
        core.counter.warm()
        tally = Tally(seconds=seconds)
        start = time.perf_counter() + WARMUP_S
        end = start + seconds

        async def conversation(index: int) -> None:
            key = ConversationKey("console", f"pg-{tag}", f"c{index}")
            for number in itertools.count():
                if time.perf_counter() >= end:
                    return
                try:
                    await asyncio.wait_for(_answer(core, watch, key, number), ANSWER_TIMEOUT_S)
                except Exception as exc:  # counted; the phase goes on
                    log.warning("%s: %r", key.as_str(), exc)
                    tally.failed += 1
                    continue
                tally.finished += 1
                if start <= time.perf_counter() < end:
                    tally.counted += 1

        cpu = core_cpu_seconds()
        await asyncio.gather(*(conversation(i) for i in range(CONCURRENCY)))
        tally.cpu_s = core_cpu_seconds() - cpu
        await core.drain()
    return tally


async def _answer(core: Core, watch: AnswerWatch, key: ConversationKey, number: int) -> None:
    finished = watch.expect(key.as_str())
    text = f"Question {number}: how do the tides work?"
    message = bench_message(key, f"{key.channel}-m{number}", text)
    await core.handle(message, FastSink(key.channel))
    await finished


BENCHMARK = Benchmark(
    name="postgres",
    title="PostgreSQL: history loads at scale, answers/s against SQLite, two instances, failover",
    run=run,
    targets=(
        Target("pg_history_p99_ms", "<", 3.0),
        Target("pg_vs_sqlite_answers_ratio", ">=", 0.8),
        Target("failover_s", "<", 30.0),
    ),
    keys=(
        "pg_history_messages",
        "pg_history_p50_ms",
        "pg_history_p99_ms",
        "pg_history_load_p50_ms",
        "pg_history_load_p99_ms",
        "pg_answers_per_s",
        "sqlite_answers_per_s",
        "pg_vs_sqlite_answers_ratio",
        "pg_bot_cpu_ms_per_answer",
        "sqlite_bot_cpu_ms_per_answer",
        "pg_answer_failures",
        "one_instance_sqlite_answers_per_s",
        "one_instance_answers_per_s",
        "two_instances_answers_per_s",
        "two_vs_one_instances_ratio",
        "instances_answer_errors",
        "failover_config_s",
        "failover_s",
        "failover_all_s",
        "failover_held",
        "failover_answered",
    ),
)
