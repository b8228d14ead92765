"""Usage ledger and metrics: CPU per answer with both on vs both off.

Two cores built by ``bot.app.running_core``, each on its own SQLite file and the
same fake OpenAI server (its own process): "on" records every answer in the usage
ledger, times its stream for the metrics endpoint (served, and scraped once per
phase); "off" has ``usage.enabled: false`` and no ``metrics.port``. Phases
alternate (on off off on ...), so drift hits both alike; CPU is this process's and
its SQLite writer's (``core_cpu_seconds``) over each measured window, divided by the
answers finished in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.config import Config, MetricsConfig, UsageConfig
from bot.core import Core
from bot.ops import metrics_if
from bot.types import ConversationKey

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
    rounded,
)

log = logging.getLogger(__name__)

CONCURRENCY = 16  # conversations at once, per phase
TTFT_MS = 20.0
CHUNKS = 20
CHUNK_INTERVAL_MS = 2.0
MESSAGES_PER_CONVERSATION = 10
MESSAGE_TIMEOUT_S = 10.0
QUESTION = "Could you explain how the tides work, message {n}?"
ANSWER_TEXT = "Hello from the fake model. This answer is streamed in small pieces."
SIDES = ("on", "off")


@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int  # each runs one phase per side, the order swapped every round
    seconds: float
    warmup_s: float


FULL = Plan(rounds=4, seconds=3.0, warmup_s=1.0)
QUICK = Plan(rounds=1, seconds=1.0, warmup_s=0.3)


@dataclass(slots=True)
class Tally:
    answers: int = 0
    errors: int = 0
    cpu_s: float = 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _side_config(base: Config, on: bool) -> Config:
    if on:
        return dataclasses.replace(base, metrics=MetricsConfig(port=_free_port()))
    return dataclasses.replace(base, usage=UsageConfig(enabled=False))


class _Side:
    """One core and its sinks; ``phase`` runs CONCURRENCY conversations for a window."""

    def __init__(self, name: str, core: Core, watch: AnswerWatch, port: int | None) -> None:
        self.name = name
        self.core = core
        self.watch = watch
        self.port = port
        self._ids = itertools.count(1)

    async def phase(self, number: int, seconds: float) -> Tally:
        tally = Tally()
        end = time.perf_counter() + seconds
        cpu0 = core_cpu_seconds()
        await asyncio.gather(*(self._worker(number, i, end, tally) for i in range(CONCURRENCY)))
        tally.cpu_s = core_cpu_seconds() - cpu0
        if self.port is not None:  # a scrape, as Prometheus would make now and then
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{self.port}/metrics") as response,
            ):
                await response.read()
        return tally

    async def _worker(self, number: int, index: int, end: float, tally: Tally) -> None:
        sink: FastSink | None = None
        for n in itertools.count(1):
            if time.perf_counter() >= end:
                return
            conversation = (n - 1) // MESSAGES_PER_CONVERSATION
            key = ConversationKey("console", "w1", f"{self.name}{number}-c{index}-{conversation}")
            if sink is None or sink.pace_key != key.channel:
                sink = FastSink(key.channel)
            finished = self.watch.expect(key.as_str())
            message = bench_message(key, f"m{next(self._ids)}", QUESTION.format(n=n))
            try:
                await self.core.handle(message, sink)
                await asyncio.wait_for(finished, MESSAGE_TIMEOUT_S)
            except Exception as exc:  # counted and reported; the run goes on
                log.warning("message failed: %r", exc)
                tally.errors += 1
                continue
            tally.answers += 1


@contextlib.asynccontextmanager
async def _side(base: Config, name: str, tmp: Path) -> AsyncIterator[_Side]:
    cfg = _side_config(dataclasses.replace(base), name == "on")
    cfg = dataclasses.replace(
        cfg, storage=dataclasses.replace(cfg.storage, url=f"sqlite:///{tmp}/{name}.db")
    )
    async with bench_core(cfg) as (core, watch), metrics_if(cfg.metrics, core, ()) as port:
        yield _Side(name, core, watch, port)


async def run(opts: RunOptions) -> Results:
    plan = QUICK if opts.quick else FULL
    tallies = {name: Tally() for name in SIDES}
    with tempfile.TemporaryDirectory(prefix="bench-usage-") as tmp:
        async with fake_openai_process(
            ttft_ms=TTFT_MS, chunks=CHUNKS, chunk_interval_ms=CHUNK_INTERVAL_MS, text=ANSWER_TEXT
        ) as fake:
            base = bench_config(fake.base_url, Path(tmp) / "unused.db", CONCURRENCY)
            async with _side(base, "on", Path(tmp)) as on, _side(base, "off", Path(tmp)) as off:
                sides = {"on": on, "off": off}
                for side in sides.values():
                    await side.phase(-1, plan.warmup_s)
                for number in range(plan.rounds):
                    order = SIDES if number % 2 == 0 else SIDES[::-1]
                    for name in order:
                        got = await sides[name].phase(number, plan.seconds)
                        total = tallies[name]
                        total.answers += got.answers
                        total.errors += got.errors
                        total.cpu_s += got.cpu_s
    return _results(tallies)


def _results(tallies: dict[str, Tally]) -> Results:
    per = {name: (t.cpu_s / t.answers * 1000 if t.answers else 0.0) for name, t in tallies.items()}
    results: Results = {
        "on_cpu_ms_per_answer": rounded(per["on"]),
        "off_cpu_ms_per_answer": rounded(per["off"]),
        "on_vs_off_cpu_ratio": rounded(per["on"] / per["off"] if per["off"] else 0.0),
        "on_answers": tallies["on"].answers,
        "off_answers": tallies["off"].answers,
        "on_errors": tallies["on"].errors,
        "off_errors": tallies["off"].errors,
    }
    return results


BENCHMARK = Benchmark(
    name="usage",
    title="Usage ledger + metrics on vs off: CPU per answer",
    run=run,
    targets=(Target("on_vs_off_cpu_ratio", "<=", 1.05),),
    keys=(
        "on_cpu_ms_per_answer",
        "off_cpu_ms_per_answer",
        "on_vs_off_cpu_ratio",
        "on_answers",
        "off_answers",
        "on_errors",
        "off_errors",
    ),
)
