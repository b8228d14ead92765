"""Core overhead: messages/s through the whole core vs bare SDK streaming calls.

Both sides talk to the same fake OpenAI server (its own process, see
``common.fake_openai_process``) through clients built by ``bot.llm.make_client``,
with the same number of conversations, each sending its next message when its
previous answer is complete. Phases rotate (bare core plain, core plain bare, ...)
in one process, so drift hits every side alike.

* bare: ``client.chat.completions.create(..., stream=True)`` and read every chunk,
  on a client built like the bot's (its aiohttp transport): ``overhead_ratio``;
* plain: the same call on ``openai.AsyncOpenAI`` with the SDK's default transport, as
  most bots build it: ``core_vs_plain_ratio`` (the bot against a typical SDK caller);
* core: the core ``bot.app.running_core`` builds (SqliteStore on a temp file, the
  default configuration): ``Core.handle`` → user turn stored → history →
  OpenAIChat (the same SDK call) → streamed into a sink that accepts every write
  at once → answer stored and marked delivered. "Complete" means the core has
  marked it delivered, its last step. A conversation has MESSAGES_PER_CONVERSATION
  exchanges, so later prompts carry history, as a bot's do; the bare calls send
  the system prompt and one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import openai

from bot.config import Config
from bot.core import Core
from bot.llm import make_client
from bot.types import ConversationKey

from .common import (
    AnswerWatch,
    Benchmark,
    FakeServer,
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

CONCURRENCY = 64
TTFT_MS = 50.0
CHUNKS = 20
CHUNK_INTERVAL_MS = 5.0
# Each conversation holds this many exchanges, then a new one starts: the prompt
# grows with the history (0..18 earlier turns), independent of how long a phase runs.
MESSAGES_PER_CONVERSATION = 10
PHASES = ("bare", "core", "plain")  # rotated each round, so drift hits every side alike
RAMP_S = 0.5  # start of each phase not counted: all conversations start at once
MESSAGE_TIMEOUT_S = 10.0  # an answer takes well under a second here; longer means broken
QUESTION = "Could you explain how the tides work, message {n}?"
ANSWER_TEXT = "Hello from the fake model. This answer is streamed in small pieces."


@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int  # each round runs one phase of each kind
    seconds: float  # measured window of one phase
    warmup_s: float


FULL = Plan(rounds=3, seconds=5.0, warmup_s=1.0)
QUICK = Plan(rounds=1, seconds=1.5, warmup_s=0.5)


@dataclass(slots=True)
class Phase:
    """What one measured window saw."""

    completed: int = 0  # finished inside the window
    finished: int = 0  # finished at all (the window's tail included)
    errors: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0  # this process, inside the window
    fake_cpu_s: float = 0.0  # the fake server's process, inside the window
    latencies: list[float] = field(default_factory=list)

    def add(self, other: Phase) -> None:
        self.completed += other.completed
        self.errors += other.errors
        self.seconds += other.seconds
        self.cpu_s += other.cpu_s
        self.fake_cpu_s += other.fake_cpu_s
        self.latencies += other.latencies

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Window:
    start: float  # perf_counter times
    end: float


OneMessage = Callable[[int, int], Awaitable[None]]  # (conversation index, message number)


async def run(opts: RunOptions) -> Results:
    """Rotate the phases; report their rates and the core's ratios to both SDK calls."""
    plan = QUICK if opts.quick else FULL
    async with (
        fake_openai_process(
            ttft_ms=TTFT_MS, chunks=CHUNKS, chunk_interval_ms=CHUNK_INTERVAL_MS, text=ANSWER_TEXT
        ) as fake,
        _Harness.open(fake) as harness,
    ):
        await harness.warm_up(plan.warmup_s)
        phases = {name: Phase() for name in PHASES}
        ratios = []
        for number in range(plan.rounds):
            order = PHASES[number % len(PHASES) :] + PHASES[: number % len(PHASES)]
            got = {name: await harness.phase(name, number, plan.seconds) for name in order}
            for name, phase in got.items():
                phases[name].add(phase)
            ratios.append(got["core"].rate / got["bare"].rate if got["bare"].rate else 0.0)
            log.info(
                "round %d: %s",
                number + 1,
                ", ".join(f"{name} {got[name].rate:.1f}/s" for name in PHASES),
            )
    return _results(plan, phases, ratios)


def _results(plan: Plan, phases: dict[str, Phase], ratios: list[float]) -> Results:
    bare, core, plain = phases["bare"], phases["core"], phases["plain"]
    results: Results = {
        "overhead_ratio": rounded(core.rate / bare.rate if bare.rate else 0.0),
        "core_msgs_per_s": rounded(core.rate, 4),
        "bare_msgs_per_s": rounded(bare.rate, 4),
        "plain_msgs_per_s": rounded(plain.rate, 4),
        "core_vs_plain_ratio": rounded(core.rate / plain.rate if plain.rate else 0.0),
        "overhead_ratio_rounds": " ".join(f"{r:.3f}" for r in ratios),
    }
    for name, phase in phases.items():
        results[f"{name}_answer_p50_ms"] = rounded(percentile(phase.latencies, 50) * 1000)
        results[f"{name}_answer_p99_ms"] = rounded(percentile(phase.latencies, 99) * 1000)
        per_msg = phase.cpu_s / phase.completed if phase.completed else 0.0
        results[f"{name}_cpu_ms_per_msg"] = rounded(per_msg * 1000)
        results[f"{name}_cpu_util"] = rounded(phase.cpu_s / phase.seconds if phase.seconds else 0)
        fake_util = phase.fake_cpu_s / phase.seconds if phase.seconds else 0
        results[f"{name}_fake_cpu_util"] = rounded(fake_util)
    for name, phase in phases.items():
        results[f"{name}_errors"] = phase.errors
    results["core_concurrency"] = CONCURRENCY
    results["core_window_s"] = plan.rounds * plan.seconds
    return results


class _Harness:
    """The bot's core and a bare client on one fake server, shared by every phase."""

    def __init__(
        self,
        fake: FakeServer,
        cfg: Config,
        core: Core,
        watch: AnswerWatch,
        clients: dict[str, openai.AsyncOpenAI],
    ) -> None:
        self.fake = fake
        self.settings = cfg.openai
        self.core = core
        self.watch = watch
        self.clients = clients
        self._ids = itertools.count(1)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, fake: FakeServer) -> AsyncIterator[_Harness]:
        with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
            cfg = bench_config(fake.base_url, Path(tmp) / "bot.db", CONCURRENCY)
            clients = {
                "bare": make_client(cfg.openai),  # a second client, built the same way
                "plain": openai.AsyncOpenAI(
                    api_key="sk-bench", base_url=cfg.openai.base_url, max_retries=0
                ),
            }
            try:
                async with bench_core(cfg) as (core, watch):
                    yield cls(fake, cfg, core, watch, clients)
            finally:
                for client in clients.values():
                    await client.close()

    async def warm_up(self, seconds: float) -> None:
        """Open the connection pools, load the tokenizer, fill caches; nothing counted."""
        for name in PHASES:
            phase = await self.phase(name, -1, seconds, ramp=0.0)
            if not phase.finished or phase.errors:
                raise RuntimeError(
                    f"warming up, {phase.finished} {name} messages finished, {phase.errors} failed"
                )

    async def phase(self, name: str, number: int, seconds: float, ramp: float = RAMP_S) -> Phase:
        one = self._core_message(number) if name == "core" else self._sdk_message(name)
        now = time.perf_counter()
        window = Window(now + ramp, now + ramp + seconds)
        phase = Phase(seconds=seconds)
        sampler = asyncio.create_task(self._sample_cpu(window, phase))
        workers = [self._worker(one, i, window, phase) for i in range(CONCURRENCY)]
        await asyncio.gather(*workers)
        await sampler
        await self.core.drain()
        return phase

    async def _worker(self, one: OneMessage, index: int, window: Window, phase: Phase) -> None:
        for n in itertools.count(1):
            started = time.perf_counter()
            if started >= window.end:
                return
            try:
                await asyncio.wait_for(one(index, n), MESSAGE_TIMEOUT_S)
            except Exception as exc:  # counted and reported; the run goes on
                log.warning("message failed: %r", exc)
                phase.errors += 1
                continue
            done = time.perf_counter()
            phase.finished += 1
            if window.start <= done < window.end:
                phase.completed += 1
                phase.latencies.append(done - started)

    async def _sample_cpu(self, window: Window, phase: Phase) -> None:
        await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
        cpu0, fake0 = core_cpu_seconds(), self.fake.cpu_seconds()
        await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
        phase.cpu_s = core_cpu_seconds() - cpu0
        phase.fake_cpu_s = self.fake.cpu_seconds() - fake0

    def _sdk_message(self, name: str) -> OneMessage:
        """What a bot with no core would do: one streamed call, every chunk read."""
        client = self.clients[name]

        async def one(index: int, n: int) -> None:
            await self._sdk_call(client, n)

        return one

    async def _sdk_call(self, client: openai.AsyncOpenAI, n: int) -> None:
        settings = self.settings
        stream = await client.chat.completions.create(
            model=settings.model,
            messages=[
                {"role": "system", "content": settings.system_prompt},
                {"role": "user", "content": QUESTION.format(n=n)},
            ],
            stream=True,
            stream_options={"include_usage": True},
            temperature=settings.temperature,
            max_tokens=settings.max_output_tokens,
        )
        text = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
        if "".join(text) != ANSWER_TEXT:
            raise RuntimeError("the SDK call got a different answer")

    def _core_message(self, number: int) -> OneMessage:
        """Messages of round ``number``: fresh conversations each round, one sink each."""
        sinks: dict[int, FastSink] = {}

        async def one(index: int, n: int) -> None:
            conversation = (n - 1) // MESSAGES_PER_CONVERSATION
            key = ConversationKey("console", "w1", f"r{number}-c{index}-{conversation}")
            sink = sinks.get(index)
            if sink is None or sink.pace_key != key.channel:
                sink = sinks[index] = FastSink(key.channel)
            finished = self.watch.expect(key.as_str())
            message = bench_message(key, f"m{next(self._ids)}", QUESTION.format(n=n))
            await self.core.handle(message, sink)
            await finished
            if sink.last_text() != ANSWER_TEXT:
                raise RuntimeError(f"the sink shows {sink.last_text()!r}")

        return one


BENCHMARK = Benchmark(
    name="core",
    title="Core overhead vs bare SDK streaming",
    run=run,
    targets=(Target("overhead_ratio", ">=", 0.9),),
    keys=(
        "overhead_ratio",
        "core_msgs_per_s",
        "bare_msgs_per_s",
        "core_vs_plain_ratio",
        "plain_msgs_per_s",
        "core_answer_p50_ms",
        "bare_answer_p50_ms",
        "core_cpu_ms_per_msg",
        "bare_cpu_ms_per_msg",
        "plain_cpu_ms_per_msg",
        "core_errors",
        "bare_errors",
        "plain_errors",
    ),
)
