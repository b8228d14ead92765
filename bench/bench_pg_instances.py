"""Several ``python -m bot`` processes on one PostgreSQL database (part of ``bench postgres``).

Real bot processes in Slack HTTP mode, each a replica on its own port as behind a
load balancer, against the fake Slack (in this process, ``bench_slack.WatchedSlack``:
an answer counts when the fake applies the write that shows its whole text) and the
fake model (its own process: 50 ms to the first token, 20 chunks 5 ms apart). Each
run gets a fresh schema; the bots use the shipped defaults except HTTP mode.

* ``one_instance_answers_per_s`` / ``two_instances_answers_per_s``: WORKERS people
  each mention the bot again as soon as the previous answer is visible, each in its
  own rotating set of channels (Slack's pacing of about a post a second per channel
  never holds an answer back). A question's two events (``app_mention`` and
  ``message``, sent by Slack together) go to the replicas in turn, so with two
  instances one event of each question reaches each replica. Two instances share
  the same two cores as the database, the fakes and the driver: the ratio shows
  what the coordination costs here, not what a second machine would add.
  ``one_instance_sqlite_*`` is one instance on an SQLite file under the same load:
  the ceiling of this harness on this machine. The three setups run in ROUNDS
  (quick: one) whose order turns around; each run starts its bots afresh on a new
  schema (or file). ``*_pg_cpu_util``: CPU of every ``postgres`` process on this
  machine (other clients' included), in cores.
* ``failover_s``: two instances with ``instances.failover_s`` at its default (30;
  the quick run: FAILOVER_QUICK_S, reported as ``failover_config_s``). Instance A
  talks to a model that never answers; HELD questions are sent to A until it holds
  their conversations' leases, then A is SIGKILLed. ``failover_s`` runs from the
  kill to the first of those answers shown by B (``failover_all_s``: the last).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from .bench_platform_common import (
    FAST_MODEL,
    AnswerTimeout,
    BotProcess,
    Cpu,
    Pending,
    Tracker,
    answered,
    bot_env,
    closed_loop,
    ms,
    proc_cpu_seconds,
    question,
    wait_ready,
)
from .bench_platform_common import (
    _stop as stop_process,
)
from .bench_slack import WatchedSlack
from .common import REPO_ROOT, FakeServer, Results, fake_openai_process, percentile, rounded

log = logging.getLogger(__name__)

WORKERS = 32
CHANNELS_PER_WORKER = 32
USERS = 512  # people asking in turn: under the per-person limit (20 a minute) in a run
RAMP_S, RAMP_S_QUICK = 1.0, 0.5
PHASE_S, PHASE_S_QUICK = 10.0, 1.5
ROUNDS, ROUNDS_QUICK = 2, 1
ANSWER_TIMEOUT_S = 30.0
FAILOVER_DEFAULT_S = 30.0  # instances.failover_s as shipped
FAILOVER_QUICK_S = 10.0  # the least the config allows
HELD = 8  # questions the killed instance holds
HOLD_LEASES_WITHIN_S = 15.0
FAILOVER_MARGIN_S = 30.0  # waited past failover_s for the held questions' answers
HANGING_TTFT_MS = 600_000.0  # the killed instance's model: no answer before the kill
PG_PROCESS = "postgres"
SIGNED_IN = "Slack: signed in"
INSTANCE_LINE = re.compile(r"instance (\S+): \d+ instance\(s\) alive")
SQL_LEASES_HELD = "SELECT count(*) FROM leases WHERE holder = $1"

# A near-empty configuration: everything else is the shipped default (secrets and
# URLs come from the environment, as bench_platform_common.bot_env sets them).
CONFIG = """\
slack:
  mode: http
  http_host: 127.0.0.1
  http_port: {port}
  api_url: ${{SLACK_API_URL}}
instances:
  failover_s: {failover_s}
"""

# A URL with a fresh schema, dropped when the block ends (bench_postgres.scratch_schema).
SchemaFactory = Callable[[], contextlib.AbstractAsyncContextManager[str]]


@dataclass(frozen=True, slots=True)
class Replica:
    """One bot process and the URL its Slack events go to."""

    bot: BotProcess
    events_url: str
    instance_id: str


class Driver:
    """The fake Slack, its people, and a load balancer in front of the replicas."""

    def __init__(self) -> None:
        self.tracker = Tracker()
        self.fake = WatchedSlack(self.tracker, limits=None)
        for index in range(USERS):
            self.fake.add_user(f"U{index:08d}", f"User {index}")
        self._users = itertools.cycle(range(USERS))
        self._http: aiohttp.ClientSession | None = None
        self.errors = 0  # events a replica did not acknowledge with 200

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Driver]:
        async with self.fake, aiohttp.ClientSession(trust_env=False) as http:
            self._http = http
            yield self

    async def ask(self, channel: str, n: int, urls: tuple[str, str]) -> Pending:
        """Mention the bot in ``channel``: the app_mention to urls[0], its twin to urls[1]."""
        user = f"U{next(self._users):08d}"
        mention, twin = self.fake.mention(question(n, FAST_MODEL.text), channel=channel, user=user)
        pending = self.tracker.open(mention["event"]["ts"], FAST_MODEL.text, time.monotonic())
        await asyncio.gather(self._post(urls[0], mention), self._post(urls[1], twin))
        return pending

    async def _post(self, url: str, body: dict[str, object]) -> None:
        """POST a signed event as Slack does (one shared session: less driver CPU)."""
        assert self._http is not None
        raw = json.dumps(body)
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": self.fake.sign(raw, stamp),
        }
        try:
            async with self._http.post(url, data=raw, headers=headers) as resp:
                await resp.read()
                ok = resp.status == 200
        except aiohttp.ClientError:
            ok = False
        if not ok:
            self.errors += 1


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def replica(
    name: str, workdir: Path, driver: Driver, model: FakeServer, db_url: str, failover_s: float
) -> AsyncIterator[Replica]:
    """``python -m bot`` in Slack HTTP mode on ``db_url``, signed in; SIGTERM after."""
    port = free_port()
    config = workdir / f"{name}.yaml"
    config.write_text(CONFIG.format(port=port, failover_s=failover_s), encoding="utf-8")
    fake = driver.fake
    env = bot_env(
        model.base_url,
        workdir / f"{name}.db",
        {
            "DATABASE_URL": db_url,
            "SLACK_BOT_TOKEN": fake.bot_token,
            "SLACK_SIGNING_SECRET": fake.signing_secret,
            "SLACK_API_URL": fake.api_url,
        },
    )
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--config",
            str(config),
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    bot = BotProcess(proc, log_path)
    try:
        await wait_ready(bot, lambda: SIGNED_IN in _read(log_path), "sign in to Slack")
        found = INSTANCE_LINE.search(_read(log_path))
        instance = found.group(1) if found else ""
        yield Replica(bot, f"http://127.0.0.1:{port}/slack/events", instance)
    finally:
        await stop_process(proc, f"bot {name}")


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def replicas(
    count: int,
    workdir: Path,
    driver: Driver,
    models: list[FakeServer],
    db_url: str,
    failover_s: float,
) -> AsyncIterator[list[Replica]]:
    """``count`` replicas on one database, started at once; replica i uses models[i]."""
    async with contextlib.AsyncExitStack() as stack:
        started = await asyncio.gather(
            *(
                stack.enter_async_context(
                    replica(f"bot{i}", workdir, driver, models[i], db_url, failover_s)
                )
                for i in range(count)
            )
        )
        yield list(started)


# -- answers/s, one instance and two ------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """What the measured windows of one setup saw, summed over rounds."""

    answers: int = 0
    seconds: float = 0.0
    errors: int = 0
    bot_cpu_s: float = 0.0  # all its instances together
    pg_cpu_s: float = 0.0  # the PostgreSQL server's processes
    pg_wall_s: float = 0.0  # ... over this long (the ramp included)
    latencies: list[float] = field(default_factory=list)

    def results(self, prefix: str) -> Results:
        seconds = self.seconds or 1.0
        return {
            f"{prefix}_answers_per_s": rounded(self.answers / seconds, 4),
            f"{prefix}_p50_ms": ms(_percentile(self.latencies, 50)),
            f"{prefix}_p99_ms": ms(_percentile(self.latencies, 99)),
            f"{prefix}_bot_cpu_util": rounded(self.bot_cpu_s / seconds),
            f"{prefix}_pg_cpu_util": rounded(self.pg_cpu_s / (self.pg_wall_s or 1.0)),
        }


async def measure_rate(
    count: int, workdir: Path, model: FakeServer, schema: SchemaFactory, quick: bool, into: Tally
) -> None:
    """The closed loop against ``count`` replicas on a fresh database, added to ``into``."""
    ramp_s, seconds = (RAMP_S_QUICK, PHASE_S_QUICK) if quick else (RAMP_S, PHASE_S)
    async with (
        schema() as url,
        Driver().running() as driver,
        replicas(count, workdir, driver, [model] * count, url, FAILOVER_DEFAULT_S) as bots,
    ):
        urls = [r.events_url for r in bots]
        channels = [f"C{i:08d}" for i in range(WORKERS * CHANNELS_PER_WORKER)]

        async def ask(worker: int, n: int) -> Pending:
            channel = channels[worker * CHANNELS_PER_WORKER + n % CHANNELS_PER_WORKER]
            first = (worker + n) % count
            return await driver.ask(channel, n, (urls[first], urls[(first + 1) % count]))

        cpu = Cpu(
            bot=lambda: sum(r.bot.cpu_seconds() for r in bots),
            model=model.cpu_seconds,
            bot_pid=bots[0].bot.pid,
        )
        pg_cpu, started = server_cpu_seconds(), time.monotonic()
        phase = await closed_loop(
            ask,
            WORKERS,
            ramp_s=ramp_s,
            seconds=seconds,
            timeout_s=ANSWER_TIMEOUT_S,
            cpu=cpu,
            name=f"instances_{count}",
        )
        # Backends that exit meanwhile (other clients') take their CPU time along.
        into.pg_cpu_s += max(0.0, server_cpu_seconds() - pg_cpu)
        into.pg_wall_s += time.monotonic() - started
        for r in bots:
            r.bot.check_alive()
    into.answers += phase.completed
    into.seconds += phase.seconds
    into.errors += phase.errors + driver.errors
    into.bot_cpu_s += phase.bot_cpu_s
    into.latencies.extend(phase.latencies)


def server_cpu_seconds(name: str = PG_PROCESS) -> float:
    """CPU time of the processes called ``name`` (the PostgreSQL server and its
    backends on this machine; 0 when it runs elsewhere)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            if text[text.index("(") + 1 : text.rindex(")")] == name:
                total += proc_cpu_seconds(int(stat.parent.name))
    return total


def _percentile(values: list[float], pct: float) -> float:
    return percentile(values, pct) if values else 0.0  # no answers: 0, not NaN


# -- failover -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failover:
    first_s: float
    all_s: float
    held: int  # questions unanswered when A was killed
    answered: int  # ... answered by B


async def measure_failover(
    workdir: Path, fast: FakeServer, schema: SchemaFactory, failover_s: float
) -> Failover:
    """Kill an instance holding HELD conversations; time the survivor's first answer."""
    async with (
        schema() as url,
        fake_openai_process(ttft_ms=HANGING_TTFT_MS, chunks=1, chunk_interval_ms=0) as hanging,
        Driver().running() as driver,
        replicas(2, workdir, driver, [hanging, fast], url, failover_s) as (held_by, survivor),
    ):
        to_held = (held_by.events_url, held_by.events_url)
        asked = [await driver.ask(f"CF{i:07d}", i, to_held) for i in range(HELD)]
        await _until_leases(url, held_by.instance_id, HELD)
        held_by.bot.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await held_by.bot.proc.wait()
        left = [p for p in asked if p.final_at is None]
        done = await _answers(left, failover_s + FAILOVER_MARGIN_S)
        survivor.bot.check_alive()
    finals = sorted(p.final_at - killed_at for p in done if p.final_at is not None)
    return Failover(  # none answered: infinite, so the target shows as missed
        first_s=rounded(finals[0]) if finals else math.inf,
        all_s=rounded(finals[-1]) if finals else math.inf,
        held=len(left),
        answered=len(finals),
    )


async def _until_leases(url: str, holder: str, count: int) -> None:
    """Until ``holder`` holds ``count`` leases (it is answering them), or a while passed."""
    con = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + HOLD_LEASES_WITHIN_S
        while await con.fetchval(SQL_LEASES_HELD, holder) < count:
            if time.monotonic() > deadline:
                log.warning("failover: the instance to kill did not take %d leases", count)
                return
            await asyncio.sleep(0.05)
    finally:
        await con.close()


async def _answers(pending: list[Pending], within: float) -> list[Pending]:
    async def one(p: Pending) -> Pending | None:
        try:
            return await answered(p, within)
        except AnswerTimeout:
            return None

    found = await asyncio.gather(*(one(p) for p in pending))
    return [p for p in found if p is not None]


# -- the keys -----------------------------------------------------------------------------


async def rates(workdir: Path, model: FakeServer, schema: SchemaFactory, quick: bool) -> Results:
    """SQLite with one instance (the harness's own ceiling), PostgreSQL with one and
    two, in rounds whose order turns around, so drift hits all alike."""

    files = itertools.count()

    @contextlib.asynccontextmanager
    async def sqlite_file() -> AsyncIterator[str]:  # a new file each time
        yield f"sqlite:///{workdir / f'instances-{next(files)}.db'}"

    setups = {
        "one_instance_sqlite": (1, sqlite_file),
        "one_instance": (1, schema),
        "two_instances": (2, schema),
    }
    tallies = {name: Tally() for name in setups}
    for number in range(ROUNDS_QUICK if quick else ROUNDS):
        order = list(setups) if number % 2 == 0 else list(reversed(setups))
        for name in order:
            count, factory = setups[name]
            await measure_rate(count, workdir, model, factory, quick, tallies[name])
    results: Results = {}
    for name, tally in tallies.items():
        results.update(tally.results(name))
    one, two = tallies["one_instance"], tallies["two_instances"]
    ratio = two.answers / one.answers if one.answers else 0.0  # equal windows
    results["two_vs_one_instances_ratio"] = rounded(ratio)
    results["instances_answer_errors"] = sum(t.errors for t in tallies.values())
    return results


async def run(schema: SchemaFactory, workdir: Path, quick: bool) -> Results:
    """Answers/s of one instance and two, then the failover: their keys."""
    async with fake_openai_process(
        ttft_ms=FAST_MODEL.ttft_ms,
        chunks=FAST_MODEL.chunks,
        chunk_interval_ms=FAST_MODEL.chunk_interval_ms,
        text=FAST_MODEL.text,
    ) as model:
        results = await rates(workdir, model, schema, quick)
        failover_s = FAILOVER_QUICK_S if quick else FAILOVER_DEFAULT_S
        failover = await measure_failover(workdir, model, schema, failover_s)
    results["failover_config_s"] = failover_s
    results["failover_s"] = failover.first_s
    results["failover_all_s"] = failover.all_s
    results["failover_held"] = failover.held
    results["failover_answered"] = failover.answered
    return results
