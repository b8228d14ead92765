"""What the Discord and Slack benchmarks share: the bot process, answer tracking, load phases.

The bot runs as the product runs: ``python -m bot --config config.yaml`` (the shipped
file) in its own process, configured only through the environment variables the
README documents (``OPENAI_BASE_URL``, ``DATABASE_URL``, the platform tokens and API
URLs). So the adapters, the core on SqliteStore and the platform limits are exactly
what ``python -m bot`` builds; nothing here can override them.

The fake platform (an aiohttp server the real discord.py / slack_bolt talk to) and
the driver that plays the users live in the benchmark process; the fake model has
its own process (:class:`TwoSpeedModel`: llmcord's fast short answer by default, a
5,000-character answer streamed over 3 s when the question asks for it, so one bot
process serves every phase). The driver sees every write the bot makes at the
moment the fake applies it, so "visible" means: stored by the platform and shown to
its readers. Three processes on a 2-core machine: the bot's CPU is measured apart.

``BENCH_PROFILE_DIR=dir python -m bench discord`` also samples the bot with py-spy
(GIL holder only, 250 Hz) during each measured phase: ``dir/<phase>.txt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.__main__ import loop_factory
from fakes.fake_openai import Behaviour, FakeOpenAI, JsonDict, echo_last_user

from .common import (
    REPO_ROOT,
    FakeServer,
    Results,
    loopback_env,
    model_process,
    percentile,
    rounded,
    with_frozen_heap,
)

log = logging.getLogger(__name__)

BOT_CONFIG = REPO_ROOT / "config.yaml"  # the shipped configuration, unchanged
BENCH_MODEL_SLOTS = 1000  # openai.max_concurrent_requests: more than any workload runs at once
BOT_API_KEY = "sk-bench-0000000000000000"
BOT_START_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 10.0  # the bot gives answers in flight 5 s on SIGTERM
LOG_TAIL_CHARS = 3000
READY_POLL_S = 0.05
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KIB_PER_MIB = 1024
PROFILE_DIR_VAR = "BENCH_PROFILE_DIR"
# Logged at every start, whatever happens next: discord.py has no voice support
# installed; slack_bolt sees SLACK_BOT_TOKEN in the environment although the adapter
# hands it a client and an authorize function. Not counted, so the count shows news.
KNOWN_WARNINGS = (
    "voice will NOT be supported",
    "As you gave `client` as well, `token` will be unused",
    "As `installation_store` or `authorize` has been used, `token`",
    # discord.py notes a heartbeat's send time in its keep-alive thread only after the
    # send completes; a loopback gateway's ACK can be handled first, and the latency is
    # then measured from the previous beat (~41 s). Not seen with a real gateway's RTT.
    "websocket is 41.",
)
PROFILE_RATE_HZ = 250

# The model as llmcord's workload saw it, and a long streamed answer for fairness.
SHORT_ANSWER = "Hello from the fake model. This answer is streamed in small pieces."
FAST_TTFT_MS = 50.0
FAST_CHUNKS = 20
FAST_CHUNK_INTERVAL_MS = 5.0
LONG_CHARS = 5000
LONG_TTFT_MS = 300.0
LONG_CHUNKS = 60
LONG_CHUNK_INTERVAL_MS = 50.0  # 60 chunks, 3 s of streaming
LONG_TAIL_CHARS = 40  # the final part of a long answer is recognised by its ending
LONG_MARKER = "[long answer]"  # in a question: the fake model gives the long answer
QUESTION = "explain the tides, please ({n})"


def long_answer(chars: int = LONG_CHARS) -> str:
    """A Markdown-free answer of exactly ``chars`` characters, in paragraphs."""
    sentence = (
        "Tides rise and fall because the Moon and the Sun pull on the oceans, "
        "and the Earth turns beneath the bulges they raise. "
    )
    paragraphs: list[str] = []
    text = ""
    while len(text) < chars:
        paragraphs.append(f"Part {len(paragraphs) + 1}. " + (sentence * 3).strip())
        text = "\n\n".join(paragraphs)
    cut = text[:chars]
    # End on a visible character: a platform does not show a trailing space as written.
    return cut if not cut[-1].isspace() else cut[:-1] + "."


LONG_ANSWER = long_answer()


@dataclass(frozen=True, slots=True)
class Model:
    """How the fake model answers one question."""

    text: str
    ttft_ms: float
    chunks: int
    chunk_interval_ms: float


FAST_MODEL = Model(SHORT_ANSWER, FAST_TTFT_MS, FAST_CHUNKS, FAST_CHUNK_INTERVAL_MS)
LONG_MODEL = Model(LONG_ANSWER, LONG_TTFT_MS, LONG_CHUNKS, LONG_CHUNK_INTERVAL_MS)


def question(n: int, answer: str) -> str:
    """A question whose answer from :class:`TwoSpeedModel` is ``answer``."""
    if answer == LONG_MODEL.text:
        return f"{QUESTION.format(n=n)} {LONG_MARKER}"
    if answer == FAST_MODEL.text:
        return QUESTION.format(n=n)
    raise ValueError("the fake model knows two answers")


class TwoSpeedModel(FakeOpenAI):
    """The fake model answering as FAST_MODEL, or as LONG_MODEL when asked for it.

    One model process serves both, so one bot process runs every phase: a question
    carrying LONG_MARKER in the newest user message gets the long answer.
    """

    def __init__(self, *, long: Model = LONG_MODEL, **options: Any) -> None:
        super().__init__(**options)
        self.long = long

    async def _stream(
        self, request: web.Request, plan: Behaviour, body: JsonDict, text: str, request_id: str
    ) -> web.StreamResponse:
        if LONG_MARKER in echo_last_user(body):
            spec = self.long
            plan = Behaviour(
                text=spec.text,
                ttft_s=spec.ttft_ms / 1000,
                chunks=spec.chunks,
                chunk_interval_s=spec.chunk_interval_ms / 1000,
            )
            text = spec.text
        return await super()._stream(request, plan, body, text, request_id)


async def _serve_model() -> None:
    """``python -m bench.bench_platform_common``: serve TwoSpeedModel until SIGTERM."""
    spec = FAST_MODEL
    fake = TwoSpeedModel(
        ttft_s=spec.ttft_ms / 1000,
        chunks=spec.chunks,
        chunk_interval_s=spec.chunk_interval_ms / 1000,
        default=Behaviour(text=spec.text),
        record=False,  # a long benchmark would otherwise grow without bound
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(f"listening on {fake.base_url}", flush=True)
        await with_frozen_heap(stop.wait())


@contextlib.asynccontextmanager
async def two_speed_model() -> AsyncIterator[FakeServer]:
    """Run :class:`TwoSpeedModel` in its own process until the block ends.

    Its own process keeps the fake's work off the bot's and the driver's CPU, as
    ``common.fake_openai_process`` does for the single-speed fake.
    """
    async with model_process(__name__) as server:
        yield server


# -- the bot's own process ---------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """The same for a process and its live children: the bot's SQLite writer process
    is part of the bot."""
    total = proc_cpu_seconds(pid)
    for child in _children(pid):
        with contextlib.suppress(OSError):  # it may have just exited
            total += tree_cpu_seconds(child)
    return total


def _children(pid: int) -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def proc_rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) / KIB_PER_MIB
    raise RuntimeError(f"VmRSS missing for pid {pid}")


@dataclass(slots=True)
class BotProcess:
    """``python -m bot`` running against the fakes."""

    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        return proc_rss_mb(self.pid)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        return ""

    def warnings(self) -> int:
        """Lines the bot logged at WARNING or above (shown with ``-v``)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        found = [
            line
            for line in text.splitlines()
            if (" WARNING " in line or " ERROR " in line)
            and not any(known in line for known in KNOWN_WARNINGS)
        ]
        for line in found:
            log.warning("bot: %s", line)
        return len(found)

    def check_alive(self) -> None:
        if self.proc.returncode is not None:
            raise RuntimeError(
                f"the bot exited with code {self.proc.returncode}:\n{self.log_tail()}"
            )


def bot_env(base_url: str, db_path: Path, platform_env: Mapping[str, str]) -> dict[str, str]:
    """The environment a user would set (README), pointed at the fakes."""
    env = loopback_env()
    for name in list(env):
        if name.startswith(("DISCORD_", "SLACK_", "BOT_", "LOG_", "DATABASE_")):
            del env[name]
    env.update(
        {
            "OPENAI_API_KEY": BOT_API_KEY,
            "OPENAI_BASE_URL": base_url,
            # The workloads run up to 64 conversations at once: with the shipped cap of
            # 32 model requests, half of them would wait for a slot and the numbers would
            # measure the cap, not the bot (PERFORMANCE.md, "Targets, and
            # why each exists").
            "OPENAI_MAX_CONCURRENT_REQUESTS": str(BENCH_MODEL_SLOTS),
            "DATABASE_URL": f"sqlite:///{db_path}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(platform_env)
    return env


@contextlib.asynccontextmanager
async def bot_process(
    base_url: str, workdir: Path, platform_env: Mapping[str, str]
) -> AsyncIterator[BotProcess]:
    """Start ``python -m bot`` with the shipped config; SIGTERM it when the block ends."""
    log_path = workdir / "bot.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--config",
            str(BOT_CONFIG),
            cwd=REPO_ROOT,
            env=bot_env(base_url, workdir / "bot.db", platform_env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    bot = BotProcess(proc, log_path)
    try:
        yield bot
    finally:
        await _stop(proc, "the bot")


async def _stop(proc: asyncio.subprocess.Process, what: str) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning("%s did not stop within %.0f s of SIGTERM", what, STOP_TIMEOUT_S)
        proc.kill()
        await proc.wait()
    log.info("%s stopped (exit code %s)", what, proc.returncode)


async def wait_ready(bot: BotProcess, ready: Callable[[], bool], what: str) -> None:
    """Poll until ``ready()``; fail early if the bot exits, or after BOT_START_TIMEOUT_S."""
    deadline = time.monotonic() + BOT_START_TIMEOUT_S
    while not ready():
        bot.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bot did not {what} in {BOT_START_TIMEOUT_S:.0f} s")
        await asyncio.sleep(READY_POLL_S)


@contextlib.asynccontextmanager
async def profiled(pid: int, name: str, seconds: float) -> AsyncIterator[None]:
    """With ``BENCH_PROFILE_DIR`` set, sample the bot with py-spy while the block runs.

    The samples go to ``$BENCH_PROFILE_DIR/<name>.txt`` as collapsed stacks (one line
    per stack with its sample count; feed it to a flame graph tool or sort by count).
    """
    directory = os.environ.get(PROFILE_DIR_VAR)
    spy = _py_spy()
    if not directory or spy is None:
        yield
        return
    out = Path(directory) / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    args += ["--rate", str(PROFILE_RATE_HZ), "--gil", "--format", "raw", "--output", str(out)]
    proc = await asyncio.create_subprocess_exec(
        spy, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield
    finally:
        await proc.wait()
        log.info("profile of %s written to %s", name, out)


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")  # the venv's, when not on PATH
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


# -- answers as the platform shows them -------------------------------------------------


class AnswerTimeout(Exception):
    """The final text of an answer did not appear in time."""


@dataclass(slots=True)
class Pending:
    """One question and what the platform has shown of its answer so far."""

    sent_at: float  # time.monotonic() just before the platform delivered the question
    expected: str  # the whole answer, or (long answers) how its final part ends
    whole: bool  # True: the final write shows exactly ``expected``
    done: asyncio.Future[None]
    key: str = ""  # the platform's id of the question
    first_text_at: float | None = None
    final_at: float | None = None

    def seen(self, text: str, at: float) -> None:
        """A write of ``text`` to this answer became visible at ``at``."""
        if self.first_text_at is None and text.strip():
            self.first_text_at = at
        final = text == self.expected if self.whole else text.endswith(self.expected)
        if final and self.final_at is None:
            self.final_at = at
            if not self.done.done():
                self.done.set_result(None)

    @property
    def latency(self) -> float:
        assert self.final_at is not None
        return self.final_at - self.sent_at

    @property
    def first_text(self) -> float | None:
        return None if self.first_text_at is None else self.first_text_at - self.sent_at


def expect(answer: str) -> tuple[str, bool]:
    """What :class:`Pending` looks for: the whole text, or the ending of a multi-part one."""
    if len(answer) <= LONG_TAIL_CHARS * 10:
        return answer, True
    return answer[-LONG_TAIL_CHARS:], False


class Tracker:
    """Questions in flight, keyed by the platform's id of the question."""

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}

    def open(self, question_id: str, answer: str, sent_at: float) -> Pending:
        expected, whole = expect(answer)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = Pending(sent_at, expected, whole, future, question_id)
        self._pending[question_id] = pending
        return pending

    def seen(self, question_id: str, text: str, at: float) -> None:
        pending = self._pending.get(question_id)
        if pending is not None:
            pending.seen(text, at)
            if pending.final_at is not None:
                del self._pending[question_id]


async def answered(pending: Pending, within: float) -> Pending:
    """Wait for the final text of ``pending``; AnswerTimeout if it does not come."""
    try:
        await asyncio.wait_for(asyncio.shield(pending.done), within)
    except TimeoutError:
        raise AnswerTimeout(f"no final answer within {within:.0f} s") from None
    return pending


# -- closed-loop load ---------------------------------------------------------------

# (worker index, message number) -> the question's Pending, once the platform sent it
Ask = Callable[[int, int], Awaitable[Pending]]


@dataclass(slots=True)
class Phase:
    """What one measured window saw."""

    seconds: float
    completed: int = 0  # answers whose final text appeared inside the window
    finished: int = 0  # answers whose final text appeared at all
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    first_texts: list[float] = field(default_factory=list)
    bot_cpu_s: float = 0.0
    fakes_cpu_s: float = 0.0  # this process: the fake platform and the driver
    model_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Cpu:
    """Where to read CPU time of the three processes."""

    bot: Callable[[], float]
    model: Callable[[], float]
    bot_pid: int

    def sample(self) -> tuple[float, float, float]:
        return self.bot(), time.process_time(), self.model()


async def closed_loop(
    ask: Ask,
    workers: int,
    *,
    ramp_s: float,
    seconds: float,
    timeout_s: float,
    cpu: Cpu,
    name: str,
) -> Phase:
    """``workers`` users, each asking again as soon as its answer is visible.

    Answers that finish during the first ``ramp_s`` (everyone starts at once) or
    after the window are not counted; the workers stop asking at the window's end.
    """
    now = time.monotonic()
    start, end = now + ramp_s, now + ramp_s + seconds
    phase = Phase(seconds=seconds)
    log.info("%s: %d users, %.1f s", name, workers, ramp_s + seconds)

    async def worker(index: int) -> None:
        for number in itertools.count(1):
            if time.monotonic() >= end:
                return
            try:
                pending = await answered(await ask(index, number), timeout_s)
            except AnswerTimeout as exc:
                log.warning("worker %d: %s", index, exc)
                phase.errors += 1
                continue
            assert pending.final_at is not None
            phase.finished += 1
            if start <= pending.final_at < end:
                phase.completed += 1
                phase.latencies.append(pending.latency)
                if pending.first_text is not None:
                    phase.first_texts.append(pending.first_text)

    async def sample() -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        before = cpu.sample()
        async with profiled(cpu.bot_pid, name, seconds):
            await asyncio.sleep(max(0.0, end - time.monotonic()))
        after = cpu.sample()
        phase.bot_cpu_s, phase.fakes_cpu_s, phase.model_cpu_s = (
            b - a for a, b in zip(before, after, strict=True)
        )

    await asyncio.gather(sample(), *(worker(i) for i in range(workers)))
    return phase


def phase_results(prefix: str, phase: Phase, *, rate_key: str = "msgs_per_s") -> Results:
    """Rate, latency percentiles and CPU of a phase, under ``prefix_``."""
    per_answer = phase.bot_cpu_s / phase.completed if phase.completed else 0.0
    return {
        f"{prefix}_{rate_key}": rounded(phase.rate, 4),
        f"{prefix}_p50_ms": ms(percentile(phase.latencies, 50)),
        f"{prefix}_p99_ms": ms(percentile(phase.latencies, 99)),
        f"{prefix}_first_text_p50_ms": ms(percentile(phase.first_texts, 50)),
        f"{prefix}_first_text_p99_ms": ms(percentile(phase.first_texts, 99)),
        f"{prefix}_answers": phase.completed,
        f"{prefix}_errors": phase.errors,
        f"{prefix}_bot_cpu_ms_per_answer": rounded(per_answer * 1000),
        f"{prefix}_bot_cpu_util": rounded(phase.bot_cpu_s / phase.seconds),
        f"{prefix}_fakes_cpu_util": rounded(phase.fakes_cpu_s / phase.seconds),
        f"{prefix}_model_cpu_util": rounded(phase.model_cpu_s / phase.seconds),
    }


def light_results(prefix: str, phase: Phase) -> Results:
    """Latency under light load (no queueing for the bot's CPU)."""
    return {
        f"{prefix}_msgs_per_s": rounded(phase.rate, 4),
        f"{prefix}_p50_ms": ms(percentile(phase.latencies, 50)),
        f"{prefix}_p99_ms": ms(percentile(phase.latencies, 99)),
        f"{prefix}_first_text_p50_ms": ms(percentile(phase.first_texts, 50)),
        f"{prefix}_answers": phase.completed,
        f"{prefix}_errors": phase.errors,
    }


def ms(seconds: float) -> float:
    return rounded(seconds * 1000)


# -- many channels streaming at once --------------------------------------------------

ChannelAsk = Callable[[int, int], Awaitable[Pending]]  # (channel index, round) -> Pending


@dataclass(slots=True)
class Rounds:
    """Answers of a fairness run, by round (round 0: every channel starts at once)."""

    by_round: list[list[Pending]]
    errors: int
    seconds: float

    @property
    def answers(self) -> list[Pending]:
        return [p for answers in self.by_round for p in answers]


async def stream_rounds(ask: ChannelAsk, channels: int, rounds: int, within: float) -> Rounds:
    """Channel i asks ``rounds`` questions back to back; all channels start at once."""
    started = time.monotonic()
    result = Rounds([[] for _ in range(rounds)], 0, 0.0)

    async def channel_user(index: int) -> None:
        for number in range(rounds):
            try:
                result.by_round[number].append(await answered(await ask(index, number), within))
            except AnswerTimeout:
                result.errors += 1

    await asyncio.gather(*(channel_user(i) for i in range(channels)))
    result.seconds = time.monotonic() - started
    return result


def fair_results(prefix: str, run: Rounds, model: Model) -> Results:
    """First visible text (all channels starting at once), answer times, errors.

    ``first_text_*``: the first round, every channel fresh. ``next_first_text_p50_ms``:
    later rounds, each asked in a channel whose previous answer just finished.
    """
    firsts = [p.first_text for p in run.by_round[0] if p.first_text is not None]
    later = [p.first_text for r in run.by_round[1:] for p in r if p.first_text is not None]
    latencies = [p.latency for p in run.answers]
    p99 = percentile(firsts, 99)
    results: Results = {
        f"{prefix}_answers": len(run.answers),
        f"{prefix}_errors": run.errors,
        f"{prefix}_first_text_p50_ms": ms(percentile(firsts, 50)),
        f"{prefix}_first_text_p99_ms": ms(p99),
        f"{prefix}_first_text_over_ttft_p99_ms": ms(p99 - model.ttft_ms / 1000),
        f"{prefix}_answer_p50_ms": ms(percentile(latencies, 50)),
        f"{prefix}_answer_p99_ms": ms(percentile(latencies, 99)),
        f"{prefix}_model_stream_ms": rounded(
            model.ttft_ms + model.chunks * model.chunk_interval_ms
        ),
    }
    if later:
        results[f"{prefix}_next_first_text_p50_ms"] = ms(percentile(later, 50))
        results[f"{prefix}_next_first_text_p99_ms"] = ms(percentile(later, 99))
    return results


# -- writes per channel -----------------------------------------------------------------


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most events in any interval of length ``window`` (times sorted or not)."""
    ordered = sorted(times)
    best, low = 0, 0
    for high, at in enumerate(ordered):
        while at - ordered[low] >= window:
            low += 1
        best = max(best, high - low + 1)
    return best


def per_channel_max(writes: Mapping[str, Sequence[float]], window: float) -> int:
    """The busiest channel's most writes in any ``window`` seconds."""
    return max((max_in_window(times, window) for times in writes.values()), default=0)


@dataclass(slots=True)
class CallCounts:
    """Platform calls of one or more answers, by kind."""

    reads: int = 0
    posts: int = 0
    edits: int = 0
    typing: int = 0  # Discord's typing indicator, Slack's status line
    other: int = 0
    by_name: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, name: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.by_name[name] = self.by_name.get(name, 0) + 1

    def results(self, prefix: str, answers: int) -> Results:
        """Calls per answer under ``prefix_`` (flat keys plus one readable summary)."""
        per = max(1, answers)
        out: Results = {
            f"{prefix}_{kind}": rounded(getattr(self, kind) / per)
            for kind in ("reads", "posts", "edits", "typing", "other")
        }
        summary = ", ".join(f"{n} {c / per:g}" for n, c in sorted(self.by_name.items()))
        out[f"{prefix}_calls"] = summary or "none"
        return out


def count_calls(calls: Iterable[tuple[str, str]]) -> CallCounts:
    """``(kind, name)`` pairs counted."""
    counts = CallCounts()
    for kind, name in calls:
        counts.add(kind, name)
    return counts


async def settle(seconds: float) -> None:
    """Let stray writes (a late edit, a stop call) arrive before counting."""
    await asyncio.sleep(seconds)


if __name__ == "__main__":
    # On uvloop like the bot: the fake then keeps its 5 ms chunk spacing under load
    # with less of the CPU the two share.
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory()) as run:
        run.run(_serve_model())
