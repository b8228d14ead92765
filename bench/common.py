"""What every benchmark shares: the registry types, timing, output, fakes and a bench core.

A benchmark is a module ``bench/bench_<name>.py`` exposing ``BENCHMARK``, a
:class:`Benchmark` whose ``run`` returns flat ``{key: number or string}`` results.
Keys are unique across benchmarks, so ``python -m bench --json`` can print them all
in one object. Benchmarks report numbers; targets are shown, never enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import math
import os
import platform
import re
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import openai

from bot.app import running_core
from bot.config import Config, config_from_dict
from bot.core import Core
from bot.store import Store
from bot.types import ConversationKey, IncomingMessage, PlatformLimits

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "chatbridge-bench"
BENCH_API_KEY = "sk-bench-0000000000000000"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
OPENAI_ENV_VARS = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_CUSTOM_HEADERS")
HEAP_FREEZE_INTERVAL_S = 1.0  # see keep_heap_frozen
FAKE_START_TIMEOUT_S = 20.0
FAKE_STOP_TIMEOUT_S = 5.0
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
KIB_PER_MIB = 1024

# A platform that accepts every write at once: no pacing, no edit spacing, so the
# benchmark measures the core's own work, not a rate limit it would honour anyway.
FAST_PLATFORM = PlatformLimits(
    max_len=2000, can_edit=True, edit_burst=1_000_000, edit_rate=1e9, min_edit_interval=0.0
)

Value = float | int | str
Results = dict[str, Value]
Op = Literal[">=", ">", "<=", "<"]


# -- the registry's vocabulary ------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a benchmark is run: ``quick`` shrinks sizes/durations; files go to ``cache_dir``."""

    quick: bool = False
    cache_dir: Path = DEFAULT_CACHE_DIR


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for one result key, shown next to it (never a failure)."""

    key: str
    op: Op
    limit: float

    def met(self, value: Value | None) -> bool | None:
        """Whether ``value`` meets the goal; None when there is no number to judge."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        if self.op == ">=":
            return value >= self.limit
        if self.op == ">":
            return value > self.limit
        if self.op == "<=":
            return value <= self.limit
        return value < self.limit

    def __str__(self) -> str:
        return f"{self.op} {self.limit:g}"


@dataclass(frozen=True, slots=True)
class Benchmark:
    """One benchmark: an async ``run`` returning results, and the targets for some keys."""

    name: str
    title: str
    run: Callable[[RunOptions], Coroutine[Any, Any, Results]]
    targets: tuple[Target, ...] = ()
    keys: tuple[str, ...] = ()  # the keys ``run`` always returns (checked by the smoke test)


@dataclass(frozen=True, slots=True)
class Report:
    """The results of one benchmark as run."""

    benchmark: Benchmark
    results: Results
    seconds: float


# -- timing --------------------------------------------------------------------


WRITER_MARK = b"storage.sqlite_writer_process"  # in the writer process's command line


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * min(max(pct, 0.0), 100.0) / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float, digits: int = 3) -> float:
    """Round for display while keeping a float (JSON stays numeric)."""
    return float(f"{value:.{digits}g}") if value and math.isfinite(value) else value


def core_cpu_seconds() -> float:
    """CPU time of this process and of its SQLite writer processes (a core built in
    the benchmark's process writes through one; the fake servers are not counted)."""
    total = time.process_time()
    for task in Path("/proc/self/task").glob("*"):
        with contextlib.suppress(OSError):
            for pid in (task / "children").read_text().split():
                total += _writer_cpu_seconds(int(pid))
    return total


def _writer_cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        if WRITER_MARK in Path(f"/proc/{pid}/cmdline").read_bytes():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def rss_mb(status: Path = Path("/proc/self/status")) -> float:
    """Resident memory of this process (VmRSS), in MiB."""
    return _status_kib(status, "VmRSS") / KIB_PER_MIB


def peak_rss_mb(status: Path = Path("/proc/self/status")) -> float:
    """Highest resident memory of this process so far (VmHWM), in MiB."""
    return _status_kib(status, "VmHWM") / KIB_PER_MIB


def _status_kib(status: Path, field_name: str) -> float:
    for line in status.read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return float(line.split()[1])
    raise RuntimeError(f"{field_name} not found in {status}")


# -- machine -------------------------------------------------------------------


def machine_info() -> dict[str, Value]:
    """What the numbers were measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0,
        "ram_gb": round(_meminfo_kib("MemTotal") / KIB_PER_MIB / 1024, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "openai_sdk": openai.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _meminfo_kib(name: str) -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return float(line.split()[1])
    return 0.0


# -- output --------------------------------------------------------------------


def format_value(value: Value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def format_table(reports: Sequence[Report], machine: Mapping[str, Value], command: str) -> str:
    """A plain-text table of every result, with its target and whether it is met."""
    rows = [("benchmark", "key", "value", "target", "met")]
    for report in reports:
        targets = {t.key: t for t in report.benchmark.targets}
        for key, value in report.results.items():
            target = targets.get(key)
            met = None if target is None else target.met(value)
            verdict = "" if met is None else ("yes" if met else "NO")
            rows.append(
                (report.benchmark.name, key, format_value(value), str(target or ""), verdict)
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"$ {command}", _machine_line(machine), ""]
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(w) if i == 2 and index else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("   ".join(f"{r.benchmark.name}: {r.seconds:.1f}s" for r in reports))
    return "\n".join(lines)


def _machine_line(machine: Mapping[str, Value]) -> str:
    return (
        f"machine: {machine['cpu']}, {machine['cores_usable']} of {machine['cores']} cores, "
        f"{machine['ram_gb']} GB RAM, Python {machine['python']}, {machine['os']}, "
        f"openai {machine['openai_sdk']}, SQLite {machine['sqlite']}"
    )


def to_json(
    reports: Sequence[Report], machine: Mapping[str, Value], quick: bool, command: str
) -> str:
    """One JSON object: every result key at the top level, plus machine and targets."""
    out: dict[str, object] = {}
    targets: dict[str, object] = {}
    for report in reports:
        for key, value in report.results.items():
            if key in out:
                raise ValueError(f"result key {key!r} is reported by two benchmarks")
            out[key] = None if isinstance(value, float) and not math.isfinite(value) else value
        for target in report.benchmark.targets:
            met = target.met(report.results.get(target.key))
            targets[target.key] = {"target": str(target), "met": met}
    out["targets"] = targets
    out["benchmarks"] = {r.benchmark.name: round(r.seconds, 2) for r in reports}
    out["quick"] = quick
    out["command"] = command
    out["machine"] = dict(machine)
    return json.dumps(out, indent=2)


# -- environment and fakes -----------------------------------------------------


async def with_frozen_heap(work: Coroutine[Any, Any, Any]) -> Any:
    """Run ``work`` while the collector's full passes in this process stay short.

    For the processes of the fakes and the driver, never the bot's: they play
    Discord, Slack and the model, and a pause of theirs is not the bot's latency.
    Every ``HEAP_FREEZE_INTERVAL_S`` what survived moves to the permanent
    generation. Without it the driver's full collections (its records of every
    call grow during a phase) took up to 140 ms, and the model fake's 60-70 ms,
    each stalling every answer in flight.
    """

    async def freeze() -> None:
        while True:
            await asyncio.sleep(HEAP_FREEZE_INTERVAL_S)
            gc.freeze()

    freezer = asyncio.create_task(freeze())
    try:
        return await work
    finally:
        freezer.cancel()


def loopback_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: os.environ) without proxies or OpenAI overrides.

    Benchmark traffic goes to 127.0.0.1 only; a proxy or OPENAI_BASE_URL in the
    environment would send it elsewhere (the SDK reads both).
    """
    env = dict(os.environ if base is None else base)
    for name in (*PROXY_VARS, *OPENAI_ENV_VARS):
        env.pop(name, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def use_loopback_env() -> None:
    """Make this process's own HTTP clients ignore proxies (see :func:`loopback_env`)."""
    for name in (*PROXY_VARS, *OPENAI_ENV_VARS):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


@dataclass(frozen=True, slots=True)
class FakeServer:
    """A fake server running in its own process."""

    base_url: str  # ends in /v1, as the SDK wants it
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def fake_openai_process(
    *, ttft_ms: float, chunks: int, chunk_interval_ms: float, text: str | None = None
) -> AsyncIterator[FakeServer]:
    """Run ``fakes.fake_openai`` in its own process until the block ends.

    A separate process keeps the fake's work (SSE framing, timers) off the event
    loop being measured, as a real model server would be.
    """
    args = [
        "--port",
        "0",
        "--ttft-ms",
        str(ttft_ms),
        "--chunks",
        str(chunks),
        "--chunk-interval-ms",
        str(chunk_interval_ms),
    ]
    if text is not None:
        args += ["--text", text]
    async with model_process("fakes.fake_openai", *args) as server:
        yield server


@contextlib.asynccontextmanager
async def model_process(module: str, *args: str) -> AsyncIterator[FakeServer]:
    """Run ``python -m MODULE ARGS`` (a fake model that prints its URL) until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=REPO_ROOT,
        env=loopback_env(),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        url = await asyncio.wait_for(_read_url(proc), FAKE_START_TIMEOUT_S)
        yield FakeServer(url + "/v1", proc.pid)
    finally:
        await _stop(proc)


async def _read_url(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        match = LISTENING.search(line.decode())
        if match:
            return match.group(1)
    raise RuntimeError(f"the fake OpenAI server exited early (code {await proc.wait()})")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), FAKE_STOP_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# -- a core as the bot builds it -------------------------------------------------


def bench_config(base_url: str, db_path: Path, concurrency: int | None = None) -> Config:
    """The default configuration, pointed at a fake model server and an SQLite file.

    ``concurrency``: the conversations the benchmark runs at once. The model cap
    (``openai.max_concurrent_requests``) is raised to it, so answers never wait for a
    slot and the numbers measure the bot's own cost, as before the cap existed; and
    the per-person limit is off, since each conversation's one person asks again as
    soon as an answer shows, faster than ``limits.user_messages_per_minute`` allows.
    """
    openai: dict[str, object] = {"api_key": BENCH_API_KEY, "base_url": base_url}
    data: dict[str, object] = {
        "openai": openai,
        "storage": {"url": f"sqlite:///{db_path}"},  # an absolute path gives sqlite:////...
    }
    if concurrency is not None:
        openai["max_concurrent_requests"] = concurrency
        data["limits"] = {"user_messages_per_minute": 0}
    return config_from_dict(data, env={})


class AnswerWatch:
    """Tells a driver when the core has finished a message: answered or given up.

    The core's last store call for a message is ``mark_delivered`` (the answer is
    fully shown) or ``mark_done`` (it failed and the user was told). The watch
    wraps those two methods of the store instance the bot built, so the core
    under test is exactly the one ``bot.app.running_core`` makes.
    """

    def __init__(self, store: Store) -> None:
        self._waiters: dict[str, asyncio.Future[None]] = {}
        delivered, done = store.mark_delivered, store.mark_done

        async def mark_delivered(conversation: str, answer_id: int) -> None:
            await delivered(conversation, answer_id)
            self._settle(conversation, None)

        async def mark_done(conversation: str, message_id: str) -> None:
            await done(conversation, message_id)
            self._settle(conversation, AnswerFailed(f"no answer in {conversation}"))

        store.mark_delivered = mark_delivered  # type: ignore[method-assign]
        store.mark_done = mark_done  # type: ignore[method-assign]

    def expect(self, conversation: str) -> asyncio.Future[None]:
        """A future for the next message finished in ``conversation``."""
        future = asyncio.get_running_loop().create_future()
        self._waiters[conversation] = future
        return future

    def _settle(self, conversation: str, error: Exception | None) -> None:
        future = self._waiters.pop(conversation, None)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class AnswerFailed(Exception):
    """The core told the user it could not answer."""


@contextlib.asynccontextmanager
async def bench_core(cfg: Config) -> AsyncIterator[tuple[Core, AnswerWatch]]:
    """The bot's own core (``bot.app.running_core``) and a watch on its answers."""
    async with running_core(cfg) as core:
        yield core, AnswerWatch(core.store)


class FastSink:
    """A platform that takes every write at once and records it (see FAST_PLATFORM)."""

    def __init__(self, pace_key: str, limits: PlatformLimits = FAST_PLATFORM) -> None:
        self._ids = itertools.count(1)
        self.limits = limits
        self.pace_key = pace_key
        self.messages: dict[str, str] = {}
        self.sends = 0
        self.edits = 0
        self.typing_calls = 0

    async def typing(self) -> None:
        self.typing_calls += 1

    async def send(self, text: str) -> str:
        message_id = str(next(self._ids))
        self.messages[message_id] = text
        self.sends += 1
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        if message_id not in self.messages:
            raise KeyError(message_id)
        self.messages[message_id] = text
        self.edits += 1

    def last_text(self) -> str:
        """The text of the newest message."""
        return next(reversed(self.messages.values()), "")


def bench_message(key: ConversationKey, message_id: str, text: str) -> IncomingMessage:
    """A message addressed to the bot in a group conversation, one author per conversation."""
    return IncomingMessage(
        key=key,
        message_id=message_id,
        author_id=f"u-{key.channel}",
        author_name=f"User {key.channel[-4:]}",
        text=text,
        sent_at=time.time(),
        addressed=True,
    )
