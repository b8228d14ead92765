"""Bounds: memory with long messages, and the event loop while the disk stalls.

* ``rss_long_messages_mb``: the peak resident memory (VmHWM) of a fresh process
  that serves 2,000 messages of 40,000 characters in 8 conversations through the
  core as ``bot.app.running_core`` builds it (default settings: SqliteStore on a
  temporary file, ``limits.memory_cache_mb`` 64) against a fast fake model in its
  own process. Every message has its own author (the per-person rate limit is not
  what is measured). ``rss_long_messages_end_mb`` is VmRSS at the end.
* ``loop_stall_max_ms``: the longest the event loop was late while the file system
  was frozen for ``loop_stall_disk_s`` (fakes/disk_stall.py holds every COMMIT,
  as ``fsfreeze`` holds write() and fsync()) with 8 conversations talking. A
  ticker sleeps ``TICK_S`` over and over and records how late it wakes. Writes run
  on the store's writer, so a stalled commit stalls only the coroutine
  awaiting it; ``loop_stall_commits_held`` says how many commits were held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bot.__main__ import loop_factory
from bot.core import Core, CoreSettings
from bot.llm import OpenAIChat, make_client
from bot.texts import Texts
from bot.tokens import token_counter_for
from bot.types import ConversationKey, IncomingMessage
from fakes.disk_stall import DiskStall
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

LONG_CHARS = 40_000
LONG_CONVERSATIONS = 8
ANSWER_TEXT = "Noted. Here is a short answer to your long message."
CHILD_TIMEOUT_S = 300.0
ANSWER_TIMEOUT_S = 30.0  # a long message is tokenized and stored: well under this
TICK_S = 0.005
STALL_CONVERSATIONS = 8
STALL_MESSAGE_TIMEOUT_S = 30.0  # longer than any stall: a held write is not a failure
WORDS = "tide moon river python error build server answer question stream history ".split()


@dataclass(frozen=True, slots=True)
class Plan:
    long_messages: int
    before_s: float  # conversations talk this long before the freeze
    stall_s: float  # the file system stays frozen this long
    after_s: float


FULL = Plan(long_messages=2000, before_s=1.0, stall_s=4.0, after_s=1.0)
QUICK = Plan(long_messages=160, before_s=0.5, stall_s=0.5, after_s=0.3)


async def run(opts: RunOptions) -> Results:
    plan = QUICK if opts.quick else FULL
    results: Results = {}
    async with fake_openai_process(
        ttft_ms=0, chunks=2, chunk_interval_ms=0, text=ANSWER_TEXT
    ) as fake:
        results.update(await _child(["--long", str(plan.long_messages), fake.base_url]))
        results.update(await measure_stall(fake.base_url, plan))
    return results


# -- memory with long messages (in a fresh process) -------------------------------------


def long_text(number: int) -> str:
    """A 40,000-character message of words, different for every number."""
    words = itertools.cycle(WORDS[number % len(WORDS) :] + WORDS[: number % len(WORDS)])
    text = f"Message {number}: " + " ".join(itertools.islice(words, LONG_CHARS // 5))
    return text[:LONG_CHARS]


async def serve_long(messages: int, base_url: str) -> Results:
    """In this (fresh) process: ``messages`` long messages, spread over 8 conversations."""
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        cfg = bench_config(base_url, Path(tmp) / "bot.db")
        async with bench_core(cfg) as (core, watch):
            core.counter.warm()
            start_mb = rss_mb()
            failures = 0
            started = time.perf_counter()

            async def conversation(index: int) -> None:
                nonlocal failures
                for number in range(index, messages, LONG_CONVERSATIONS):
                    try:
                        await asyncio.wait_for(
                            _long_one(core, watch, index, number), ANSWER_TIMEOUT_S
                        )
                    except Exception as exc:  # counted; the run goes on
                        log.warning("message %d failed: %r", number, exc)
                        failures += 1

            await asyncio.gather(*(conversation(i) for i in range(LONG_CONVERSATIONS)))
            await core.drain()
            return {
                "rss_long_messages_mb": rounded(peak_rss_mb()),
                "rss_long_messages_end_mb": rounded(rss_mb()),
                # Of which file pages (the database's memory map, libraries): the OS
                # may drop them at will; the rest is the heap.
                "rss_long_messages_end_file_mb": rounded(_status_mb("RssFile")),
                "rss_long_messages_start_mb": rounded(start_mb),
                "rss_long_messages_count": messages,
                "rss_long_messages_failures": failures,
                "rss_long_messages_s": rounded(time.perf_counter() - started),
            }


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1]) / 1024
    return 0.0


async def _long_one(core: Core, watch: AnswerWatch, index: int, number: int) -> None:
    key = ConversationKey("console", "long", f"c{index}")
    finished = watch.expect(key.as_str())
    message = IncomingMessage(
        key=key,
        message_id=f"m{number}",
        author_id=f"u{number}",  # one author per message: no rate limit in the way
        author_name=f"Person {number % 50}",
        text=long_text(number),
        sent_at=time.time(),
        addressed=True,
    )
    sink = FastSink(key.channel)
    await core.handle(message, sink)
    await finished
    if sink.last_text() != ANSWER_TEXT:
        raise RuntimeError(f"the sink shows {sink.last_text()[:80]!r}")


async def _child(args: list[str]) -> Results:
    """``python -m bench.bench_bounds ARGS``; the numbers it prints as JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.bench_bounds",
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


# -- the event loop while the disk stalls ----------------------------------------------------


@contextlib.asynccontextmanager
async def stalled_core(base_url: str, stall: DiskStall) -> AsyncIterator[tuple[Core, AnswerWatch]]:
    """A core as ``bot.app.running_core`` builds it, on a store whose commits ``stall`` holds."""
    with tempfile.TemporaryDirectory(prefix="bench-stall-") as tmp:
        cfg = bench_config(base_url, Path(tmp) / "bot.db")
        store = SqliteStore(str(Path(tmp) / "bot.db"), on_connect=stall.install)
        await store.open()
        client = make_client(cfg.openai)
        counter = token_counter_for(cfg.openai.model)
        core = Core(
            store=store,
            model=OpenAIChat.from_config(client, cfg.openai),
            counter=counter,
            texts=Texts("en"),
            settings=CoreSettings(
                system_prompt=cfg.openai.system_prompt,
                context_tokens=cfg.openai.context_tokens,
                max_output_tokens=cfg.openai.max_output_tokens,
            ),
        )
        try:
            yield core, AnswerWatch(store)
        finally:
            stall.thaw()
            await core.close(5.0)
            await client.close()
            await store.close()


async def measure_stall(base_url: str, plan: Plan) -> Results:
    stall = DiskStall(guard_s=plan.stall_s + STALL_MESSAGE_TIMEOUT_S)
    lags: list[float] = []  # from the freeze on
    baseline: list[float] = []  # before it: what the (loaded) machine does anyway
    answered = {"before": 0, "during": 0, "after": 0}
    phase = "before"
    failures = 0
    async with stalled_core(base_url, stall) as (core, watch):
        core.counter.warm()
        stop = asyncio.Event()

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                due = loop.time() + TICK_S
                await asyncio.sleep(TICK_S)
                (baseline if phase == "before" else lags).append(max(0.0, loop.time() - due))

        async def conversation(index: int) -> None:
            nonlocal failures
            key = ConversationKey("console", "stall", f"c{index}")
            for n in itertools.count():
                if stop.is_set():
                    return
                finished = watch.expect(key.as_str())
                message = bench_message(key, f"m{index}-{n}", f"Question {n}, please?")
                try:
                    await asyncio.wait_for(
                        _handled(core, message, finished, key), STALL_MESSAGE_TIMEOUT_S
                    )
                    answered[phase] += 1
                except Exception as exc:  # counted; the run goes on
                    log.warning("stall bench message failed: %r", exc)
                    failures += 1

        ticks = asyncio.create_task(ticker())
        talkers = [asyncio.create_task(conversation(i)) for i in range(STALL_CONVERSATIONS)]
        await asyncio.sleep(plan.before_s)
        phase = "during"
        thawing = stall.freeze_for(plan.stall_s)
        await asyncio.sleep(plan.stall_s)
        await asyncio.to_thread(thawing.join)
        phase = "after"
        await asyncio.sleep(plan.after_s)
        stop.set()
        await asyncio.gather(*talkers)
        await ticks
    return {
        "loop_stall_max_ms": rounded(max(lags, default=0.0) * 1000),
        "loop_stall_p99_ms": rounded(percentile(lags, 99) * 1000),
        "loop_stall_baseline_max_ms": rounded(max(baseline, default=0.0) * 1000),
        "loop_stall_disk_s": plan.stall_s,
        "loop_stall_commits_held": stall.held,
        "loop_stall_answers_before": answered["before"],
        "loop_stall_answers_after": answered["after"],
        "loop_stall_failures": failures,
    }


async def _handled(
    core: Core, message: IncomingMessage, finished: asyncio.Future[None], key: ConversationKey
) -> None:
    await core.handle(message, FastSink(key.channel))
    await finished


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_bounds")
    parser.add_argument("--long", nargs=2, metavar=("MESSAGES", "BASE_URL"), required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    work = serve_long(int(args.long[0]), args.long[1])
    # The event loop the bot runs on, as `python -m bot` and `python -m bench` do.
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        print(json.dumps(runner.run(work)), flush=True)
    return 0


BENCHMARK = Benchmark(
    name="bounds",
    title="Memory with long messages; the event loop while the disk stalls",
    run=run,
    targets=(
        Target("rss_long_messages_mb", "<", 250.0),
        Target("loop_stall_max_ms", "<", 50.0),
    ),
    keys=(
        "rss_long_messages_mb",
        "rss_long_messages_end_mb",
        "rss_long_messages_failures",
        "loop_stall_max_ms",
        "loop_stall_p99_ms",
        "loop_stall_commits_held",
        "loop_stall_failures",
    ),
)

if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
