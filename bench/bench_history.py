"""History at scale: context load time on a large SQLite file, and memory after many conversations.

* ``history_p50_ms`` / ``history_p99_ms``: one answer's context, i.e.
  ``store.load_context(conv, upto, 200)`` (system prompt + turns, one trip) +
  ``bot.context.build_messages``, for
  random conversations of a store holding 1,000,000 messages in 10,000
  conversations (100 each; the quick run: 100,000 in 1,000). The file is built
  once with the sqlite3 module in one transaction (same schema as the store's
  migrations) and cached; turns of different conversations are interleaved, as
  in a busy bot, so one conversation's rows are spread over the file. Timed in
  a fresh process (``--loads``), like a bot reading its history, not in this one.
  The child reads the file through once first, so the OS page cache holds it as
  it holds a running bot's database: a file that had dropped out of the cache
  measured 6.2 ms p99 on its first run and 1.0 ms on the next (each load reads
  ~100 pages scattered over the file), so without this the number said more
  about what the machine did before than about the store.
* ``rss_mb``: resident memory of a fresh process after serving 10,000 distinct
  conversations (one message each) through the core, SqliteStore and the real
  SDK against a fast fake model (its own process). A separate process, so
  nothing this harness did before is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.__main__ import loop_factory
from bot.config import DEFAULT_SYSTEM_PROMPT, OpenAIConfig
from bot.context import build_messages
from bot.core import HISTORY_TURNS, Core
from bot.texts import Texts
from bot.tokens import TokenCounter, token_counter_for
from bot.types import ConversationKey
from storage.migrations import MIGRATIONS, SCHEMA_VERSION
from storage.sqlite import SqliteStore

from .common import (
    REPO_ROOT,
    AnswerWatch,
    Benchmark,
    FastSink,
    Results,
    RunOptions,
    Target,
    bench_config,
    bench_core,
    bench_message,
    fake_openai_process,
    loopback_env,
    peak_rss_mb,
    percentile,
    rounded,
    rss_mb,
)

log = logging.getLogger(__name__)

BUILD_FORMAT = 1  # bump when the generated data changes, so old cached files are not reused
SEED = 20240501
POOL_SIZE = 1000  # distinct texts per role; rows pick from these
USER_CHARS = (20, 160)  # length range of a generated user message
ASSISTANT_CHARS = (80, 600)
AUTHORS = ("Alice", "Bob", "Chloé", "Dae-jung", "Eve")
WORDS = (
    "the a to of and in is it you that for on with as are this be at or have from not by "
    "what how can why tide moon river python error code build server test answer question "
    "please thanks could would should maybe yes no about time data model token message "
    "channel thread history context memory latency queue batch stream edit reply"
).split()
LOAD_SAMPLES = 2000
LOAD_SAMPLES_QUICK = 500
LOAD_WARMUP = 200
READ_BLOCK = 1 << 20
RSS_CONCURRENCY = 64
CHILD_TIMEOUT_S = 170.0  # either child: serving 10,000 conversations, or 2,200 loads
ANSWER_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Size:
    messages: int
    conversations: int
    served: int  # distinct conversations driven through the core for rss_mb

    @property
    def per_conversation(self) -> int:
        return self.messages // self.conversations


FULL = Size(messages=1_000_000, conversations=10_000, served=10_000)
QUICK = Size(messages=100_000, conversations=1_000, served=1_000)


async def run(opts: RunOptions) -> Results:
    """Build (or reuse) the file, time context loads on it, then measure a serving process."""
    size = QUICK if opts.quick else FULL
    path, built_s = await asyncio.to_thread(cached_db, opts.cache_dir, size)
    results: Results = {
        "history_messages": size.messages,
        "history_conversations": size.conversations,
        "history_db_mb": rounded(path.stat().st_size / 2**20),
        "history_build_s": rounded(built_s) if built_s else "cached",
    }
    results.update(await loads_in_child(path, opts.quick))
    results.update(await measure_rss(size.served))
    return results


# -- building the database ---------------------------------------------------------


def conversation_key(index: int) -> ConversationKey:
    """The key of generated conversation ``index`` (a Discord-like channel)."""
    return ConversationKey("discord", "100000000000000001", f"2000000000000{index:05d}")


def cached_db(cache_dir: Path, size: Size) -> tuple[Path, float]:
    """The built file for ``size`` (building it if needed) and the seconds spent building."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = f"history-s{SCHEMA_VERSION}-f{BUILD_FORMAT}-{size.messages}-{size.conversations}.db"
    path = cache_dir / name
    if path.exists():
        return path, 0.0
    for stale in cache_dir.glob(f"history-s*-f*-{size.messages}-{size.conversations}.*"):
        stale.unlink()  # built for another schema or data format: never used again
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    build_db(partial, size, token_counter_for(OpenAIConfig().model))
    partial.rename(path)  # only a complete file is ever reused
    return path, time.perf_counter() - started


def build_db(path: Path, size: Size, counter: TokenCounter) -> None:
    """Write ``size.messages`` turns with the store's schema, in one transaction."""
    users, assistants = _pool(counter, USER_CHARS), _pool(counter, ASSISTANT_CHARS)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = OFF")  # a scratch file: no rollback needed
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -262144")  # 256 MiB while building
        db.execute("BEGIN")
        for step in MIGRATIONS:
            for statement in step:
                db.execute(statement)
        db.executemany(
            "INSERT INTO turns (id, conversation, role, content, tokens, author_id, author_name,"
            " message_id, created_at, reply_to, anchor) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            _rows(size, users, assistants),
        )
        db.execute(
            "INSERT INTO seen (conversation, message_id, at)"
            " SELECT conversation, message_id, ? FROM turns WHERE role = 'user'",
            (time.time(),),
        )
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode = WAL")  # as the store leaves it
    finally:
        db.close()


def _pool(counter: TokenCounter, chars: tuple[int, int]) -> list[tuple[str, int]]:
    rng = random.Random(SEED + chars[0])
    pool = []
    for _ in range(POOL_SIZE):
        target = rng.randint(*chars)
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < target:
            words.append(rng.choice(WORDS))
        text = " ".join(words).capitalize() + "."
        pool.append((text, counter.count(text)))
    return pool


def _rows(
    size: Size, users: list[tuple[str, int]], assistants: list[tuple[str, int]]
) -> Iterator[tuple[object, ...]]:
    """Turns in arrival order: every conversation's first turn, then every second, ..."""
    keys = [conversation_key(c).as_str() for c in range(size.conversations)]
    start = time.time() - size.messages  # one turn per second, ending now
    step = size.conversations
    for j in range(size.per_conversation):
        is_user = j % 2 == 0
        for c, key in enumerate(keys):
            turn_id = j * step + c + 1
            pick = (turn_id * 7919) % POOL_SIZE
            if is_user:
                text, tokens = users[pick]
                author = AUTHORS[(c + j // 2) % len(AUTHORS)]
                yield (turn_id, key, "user", text, tokens, f"u-{author}", author,
                       f"m{turn_id}", start + turn_id, None, turn_id)  # fmt: skip
            else:
                text, tokens = assistants[pick]
                asked = turn_id - step  # this conversation's previous turn
                yield (turn_id, key, "assistant", text, tokens, None, None,
                       None, start + turn_id, asked, asked)  # fmt: skip


def last_user_turn(size: Size, conversation: int) -> int:
    """Id of the newest user turn of a generated conversation."""
    j = size.per_conversation - 1
    j -= j % 2  # the newest even (user) step
    return j * size.conversations + conversation + 1


# -- context load time -------------------------------------------------------------------


async def measure_loads(path: Path, size: Size, samples: int) -> Results:
    """Time load_context + build_messages (what an answer does) for random conversations."""
    await asyncio.to_thread(read_through, path)
    store = SqliteStore(str(path))
    await store.open()
    counter = token_counter_for(OpenAIConfig().model)
    counter.warm()
    settings = OpenAIConfig()
    budget = settings.context_tokens - settings.max_output_tokens
    note = Texts("en").get("message_shortened")
    rng = random.Random(SEED)
    load_s: list[float] = []
    build_s: list[float] = []
    turns_seen = 0
    try:
        for index in range(LOAD_WARMUP + samples):
            conv = rng.randrange(size.conversations)
            key = conversation_key(conv).as_str()
            t0 = time.perf_counter()
            stored = await store.load_context(key, last_user_turn(size, conv), HISTORY_TURNS)
            t1 = time.perf_counter()
            turns = stored.turns
            system = stored.system_prompt or DEFAULT_SYSTEM_PROMPT
            build_messages(system, turns, budget, counter, group=True, shortened_note=note)
            t2 = time.perf_counter()
            if index >= LOAD_WARMUP:
                load_s.append(t1 - t0)
                build_s.append(t2 - t1)
                turns_seen += len(turns)
    finally:
        await store.close()
    total = [a + b for a, b in zip(load_s, build_s, strict=True)]
    return {
        "history_p50_ms": rounded(percentile(total, 50) * 1000),
        "history_p99_ms": rounded(percentile(total, 99) * 1000),
        "history_load_p50_ms": rounded(percentile(load_s, 50) * 1000),
        "history_load_p99_ms": rounded(percentile(load_s, 99) * 1000),
        "history_build_p50_ms": rounded(percentile(build_s, 50) * 1000),
        "history_build_p99_ms": rounded(percentile(build_s, 99) * 1000),
        "history_turns_per_load": rounded(turns_seen / len(total)),
    }


def read_through(path: Path) -> None:
    """Read the file once, so that its pages are in the OS page cache."""
    with path.open("rb") as f:
        while f.read(READ_BLOCK):
            pass


# -- memory after many conversations ------------------------------------------------------


async def loads_in_child(path: Path, quick: bool) -> Results:
    """``measure_loads`` in a fresh process, as a bot reads its history: nothing that
    earlier benchmarks left in this one (threads, heap, the fakes) in the way."""
    args = ["--loads", str(path)] + (["--quick"] if quick else [])
    return await _child(args)


async def measure_rss(conversations: int) -> Results:
    """Run the serving child against a fast fake; return what it measured."""
    async with fake_openai_process(ttft_ms=0, chunks=1, chunk_interval_ms=0) as fake:
        return await _child(["--serve", str(conversations), "--base-url", fake.base_url])


async def _child(args: list[str]) -> Results:
    """Run ``python -m bench.bench_history ARGS``; the numbers it prints as JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.bench_history",
        *args,
        cwd=REPO_ROOT,
        env=loopback_env(),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} in a child process failed (exit code {proc.returncode})")
    measured = json.loads(out.decode().strip().splitlines()[-1])
    return {key: value for key, value in measured.items() if isinstance(value, int | float)}


async def serve_many(conversations: int, base_url: str) -> Results:
    """In this (fresh) process: one message in each of ``conversations`` conversations."""
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        cfg = bench_config(base_url, Path(tmp) / "bot.db", RSS_CONCURRENCY)
        async with bench_core(cfg) as (core, watch):
            core.counter.warm()
            start_mb = rss_mb()
            failures = 0
            numbers = iter(range(conversations))
            started = time.perf_counter()

            async def driver() -> None:
                nonlocal failures
                for number in numbers:  # one shared iterator: RSS_CONCURRENCY at a time
                    try:
                        await asyncio.wait_for(_one(core, watch, number), ANSWER_TIMEOUT_S)
                    except Exception as exc:  # counted; the run goes on
                        log.warning("conversation %d failed: %r", number, exc)
                        failures += 1

            await asyncio.gather(*(driver() for _ in range(RSS_CONCURRENCY)))
            await core.drain()
            seconds = time.perf_counter() - started
            return {
                "rss_mb": rounded(rss_mb()),
                "rss_start_mb": rounded(start_mb),
                "rss_peak_mb": rounded(peak_rss_mb()),
                "rss_conversations": conversations,
                "rss_failures": failures,
                "rss_serve_msgs_per_s": rounded(conversations / seconds),
            }


async def _one(core: Core, watch: AnswerWatch, number: int) -> None:
    key = ConversationKey("console", "rss", f"c{number}")
    finished = watch.expect(key.as_str())
    message = bench_message(key, f"m{number}", f"Hello, conversation {number}!")
    await core.handle(message, FastSink(key.channel))
    await finished


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_history")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", type=int, help="conversations to serve (needs --base-url)")
    mode.add_argument("--loads", type=Path, help="time context loads on this built file")
    parser.add_argument("--base-url", help="the fake OpenAI server's /v1 URL")
    parser.add_argument("--quick", action="store_true", help="the quick run's file and samples")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.loads is not None:
        size, samples = (QUICK, LOAD_SAMPLES_QUICK) if args.quick else (FULL, LOAD_SAMPLES)
        work = measure_loads(args.loads, size, samples)
    else:
        if not args.base_url:
            parser.error("--serve needs --base-url")
        work = serve_many(args.serve, args.base_url)
    # The event loop the bot runs on, as `python -m bot` and `python -m bench` do.
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        print(json.dumps(runner.run(work)), flush=True)
    return 0


BENCHMARK = Benchmark(
    name="history",
    title="History at scale (SQLite) and memory after many conversations",
    run=run,
    targets=(Target("history_p99_ms", "<", 2.0), Target("rss_mb", "<", 150.0)),
    keys=(
        "history_p50_ms",
        "history_p99_ms",
        "history_load_p99_ms",
        "history_build_p99_ms",
        "rss_mb",
        "rss_start_mb",
        "rss_failures",
    ),
)

if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
