"""Slack end to end: the real slack_bolt (Socket Mode) in ``python -m bot`` against a fake Slack.

A question is a channel message mentioning the bot, pushed over the Socket Mode
websocket as Slack sends it: two envelopes sharing one ts (``app_mention`` and
``message``). The bot answers in the message's thread with Slack's native
streaming (chat.startStream / appendStream / stopStream) after showing its status
line. The answer is "visible" when the fake applies the write after which the
thread's reply reads as the full answer; latencies run from just before the first
envelope is pushed to that write, "first text" to the first write with any text.
The fake Slack enforces no rate limit here (``bench_slack_limits`` runs under Slack's
documented limits): the writes per channel are reported instead.
One bot process runs every phase, in this order:

* warm-up: each of the 256 benchmark users asks once, so the bot has looked their
  display names up (users.info, cached for an hour), as a bot running in a workspace.
* calls per answer (``slack_short_*``): every Web API call the fake received for one
  question from a known person in a quiet channel (3 samples).
* e2e (``slack_msgs_per_s``, ``slack_p50_ms``, ``slack_p99_ms``): 32 users ask again
  as soon as their answer is visible, each rotating over its own 64 channels, so the
  bot's per-channel pacing (about one post a second, adapters/slack/pacing.py) never holds an
  answer back: the bot's throughput and latency, here limited by its CPU. Model:
  50 ms to first token, 20 chunks 5 ms apart (145 ms). ``slack_light_*``: 4 users.
* fairness (``slack_fair_*``): 20 channels stream 5,000-character answers (300 ms to
  first token, 3 s of streaming) at once, two rounds back to back (quick: one): the
  busiest channel's writes in any second (Slack asks for about one message per
  second per channel, short bursts allowed), first visible text after the model's
  first token, and (``next_first_text``) the first text of a question asked right
  after the previous answer in the same channel. Meanwhile the long answer's calls
  (``slack_long_*``) are counted in a 21st channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes.fake_slack import ApiCall, FakeSlack, JsonDict

from .bench_platform_common import (
    LONG_ANSWER,
    LONG_MODEL,
    SHORT_ANSWER,
    AnswerTimeout,
    Ask,
    BotProcess,
    CallCounts,
    ChannelAsk,
    Cpu,
    Pending,
    Tracker,
    answered,
    bot_process,
    closed_loop,
    count_calls,
    fair_results,
    light_results,
    per_channel_max,
    phase_results,
    question,
    settle,
    stream_rounds,
    two_speed_model,
    wait_ready,
)
from .common import (
    Benchmark,
    FakeServer,
    Results,
    RunOptions,
    Target,
    rounded,
)

log = logging.getLogger(__name__)

USERS = 256  # each asks at most ~15 times in a run: under the per-person limit (20/min)
E2E_WORKERS = 32
E2E_CHANNELS_PER_WORKER = 64  # a channel sees a question every several seconds at most
LIGHT_WORKERS = 4
FAIR_CHANNELS = 20
CALL_CHANNELS = 4
SHORT_CALL_SAMPLES = 3
ANSWER_TIMEOUT_S = 30.0
SETTLE_S = 1.2  # longer than the bot's edit interval (1 s): late writes are counted
STOP_WAIT_S = 5.0  # a stream's stop waits for its workspace's chat.stopStream budget
SLACK_WRITE_WINDOW_S = 1.0  # Slack: about one message write per second per channel
TEXT_WRITES = frozenset(
    {"chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream"}
)
KINDS = {
    "chat.postMessage": "posts",
    "chat.startStream": "posts",
    "chat.update": "edits",
    "chat.appendStream": "edits",
    "chat.stopStream": "edits",
    "assistant.threads.setStatus": "typing",
}
READ_PREFIXES = ("users.", "conversations.", "team.", "bots.", "auth.")


@dataclass(frozen=True, slots=True)
class Plan:
    ramp_s: float
    e2e_s: float
    light_s: float
    fair_rounds: int


FULL = Plan(ramp_s=1.0, e2e_s=10.0, light_s=4.0, fair_rounds=2)
QUICK = Plan(ramp_s=0.5, e2e_s=1.5, light_s=1.0, fair_rounds=1)


# -- the fake, watched --------------------------------------------------------------


class WatchedSlack(FakeSlack):
    """The fake Slack, telling the driver what a thread's reply reads after each write."""

    def __init__(self, tracker: Tracker, **options: Any) -> None:
        super().__init__(**options)
        self.tracker = tracker
        self.stopped: set[str] = set()  # threads whose streamed reply was stopped

    def _answer(self, method: str, args: JsonDict, token: str | None) -> JsonDict:
        at = time.monotonic()  # the fake applies the write without awaiting anything
        answer = super()._answer(method, args, token)
        if method in TEXT_WRITES and answer.get("ok"):
            posted = self._messages.get(str(answer.get("ts") or ""))
            if posted is not None and posted.thread_ts is not None:
                self.tracker.seen(posted.thread_ts, posted.text, at)
                if method == "chat.stopStream":
                    self.stopped.add(posted.thread_ts)
        return answer


def user_id(index: int) -> str:
    return f"U{index:08d}"


def channel_id(index: int) -> str:
    return f"C{index:08d}"


class Driver:
    """Plays the users: mentions the bot and follows each answer to its final text."""

    def __init__(self) -> None:
        self.tracker = Tracker()
        self.fake = WatchedSlack(self.tracker, limits=None)  # bench_slack_limits sets them
        for index in range(USERS):
            self.fake.add_user(user_id(index), f"User {index}")
        self._users = itertools.cycle(range(USERS))

    async def ask(self, channel: str, n: int, answer: str, user: int | None = None) -> Pending:
        """Mention the bot in ``channel``; the Pending follows the answer in its thread."""
        who = user_id(next(self._users) if user is None else user)
        mention, twin = self.fake.mention(question(n, answer), channel=channel, user=who)
        pending = self.tracker.open(mention["event"]["ts"], answer, time.monotonic())
        await self.fake.push(mention)
        await self.fake.push(twin)
        return pending

    def calls_since(self, index: int) -> list[ApiCall]:
        return self.fake.calls[index:]


# -- running the bot -----------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """The bot process, the fake model and the fake Slack they talk to."""

    driver: Driver
    bot: BotProcess
    model: FakeServer
    started_s: float

    @property
    def cpu(self) -> Cpu:
        return Cpu(bot=self.bot.cpu_seconds, model=self.model.cpu_seconds, bot_pid=self.bot.pid)


@contextlib.asynccontextmanager
async def session() -> AsyncIterator[Session]:
    """Fake Slack + fake model + ``python -m bot`` in Socket Mode, connected."""
    driver = Driver()
    fake = driver.fake
    async with fake, two_speed_model() as model:
        with tempfile.TemporaryDirectory(prefix="bench-slack-") as tmp:
            env = {
                "SLACK_BOT_TOKEN": fake.bot_token,
                "SLACK_APP_TOKEN": fake.app_token,
                "SLACK_API_URL": fake.api_url,
            }
            spawned = time.monotonic()
            async with bot_process(model.base_url, Path(tmp), env) as bot:
                # The adapter opens the websocket last, once its tokens were checked.
                await wait_ready(bot, lambda: fake.connections > 0, "connect to Slack")
                started = time.monotonic() - spawned
                log.info("bot ready after %.1f s", started)
                yield Session(driver, bot, model, started)
                bot.check_alive()


# -- phases ---------------------------------------------------------------------------


def classify(call: ApiCall) -> tuple[str, str]:
    """(kind, name) of a Web API call for the calls-per-answer counts."""
    kind = KINDS.get(call.method)
    if kind is None:
        kind = "reads" if call.method.startswith(READ_PREFIXES) else "other"
    return kind, call.method


def reads(calls: list[ApiCall]) -> int:
    return sum(1 for c in calls if classify(c)[0] == "reads")


def rotating(s: Session, channels: list[str], per_worker: int, answer: str) -> Ask:
    """An Ask where worker i cycles over its own ``per_worker`` channels."""

    async def ask(worker: int, n: int) -> Pending:
        channel = channels[worker * per_worker + n % per_worker]
        return await s.driver.ask(channel, n, answer)

    return ask


async def warm_up(s: Session, channels: list[str]) -> None:
    """Every user asks once (the bot learns their names), 32 at a time, in own channels."""
    errors = 0

    async def worker(index: int) -> None:
        nonlocal errors
        for n, user in enumerate(range(index, USERS, E2E_WORKERS)):
            channel = channels[user]
            try:
                await answered(await s.driver.ask(channel, n, SHORT_ANSWER, user), ANSWER_TIMEOUT_S)
            except AnswerTimeout:
                errors += 1

    await asyncio.gather(*(worker(i) for i in range(E2E_WORKERS)))
    if errors:
        raise RuntimeError(f"warm-up: {errors} answers timed out")


async def answer_calls(s: Session, channels: list[str], answer: str, user: int) -> CallCounts:
    """One question from ``user`` in each (quiet) channel in turn; count the calls made.

    Calls that name another channel (the tail of an earlier phase) are left out.
    """
    first = len(s.driver.fake.calls)
    asked = []
    for n, channel in enumerate(channels):
        asked.append(await answered(await s.driver.ask(channel, n, answer, user), ANSWER_TIMEOUT_S))
    await settle_streams(s, asked)
    ours = set(channels)
    calls = [c for c in s.driver.calls_since(first) if call_channel(c) in ours | {None}]
    return count_calls(classify(c) for c in calls)


async def settle_streams(s: Session, answers: list[Pending]) -> None:
    """Wait for the streams of ``answers`` to be stopped, then for stray calls.

    The final text shows with the last append; the stop call after it is paced too,
    so it may come up to one pacing interval later.
    """
    fake = s.driver.fake
    with contextlib.suppress(TimeoutError):  # no stop: the counts will show it
        await fake.wait_until(lambda: all(p.key in fake.stopped for p in answers), STOP_WAIT_S)
    await settle(SETTLE_S)


def call_channel(call: ApiCall) -> str | None:
    """The channel a call acts on, if any (setStatus names it ``channel_id``)."""
    channel = call.args.get("channel") or call.args.get("channel_id")
    return str(channel) if channel else None


async def fast_phases(s: Session, plan: Plan, groups: dict[str, list[str]]) -> Results:
    """Warm-up, short-answer calls, e2e load and light load, on one bot."""
    results: Results = {
        "slack_bot_start_s": rounded(s.started_s),
        "slack_bot_rss_start_mb": rounded(s.bot.rss_mb()),  # connected, nothing answered yet
    }
    mark = len(s.driver.fake.calls)
    await warm_up(s, groups["warm"])
    lookups = sum(1 for c in s.driver.calls_since(mark) if c.method == "users.info")
    results["slack_warmup_name_lookups"] = lookups  # one per person: USERS
    # User 0 asked during the warm-up: the bot knows their name.
    counts = await answer_calls(s, groups["calls"][:SHORT_CALL_SAMPLES], SHORT_ANSWER, 0)
    results.update(counts.results("slack_short", SHORT_CALL_SAMPLES))

    e2e = rotating(s, groups["e2e"], E2E_CHANNELS_PER_WORKER, SHORT_ANSWER)
    mark = len(s.driver.fake.calls)
    phase = await closed_loop(
        e2e,
        E2E_WORKERS,
        ramp_s=plan.ramp_s,
        seconds=plan.e2e_s,
        timeout_s=ANSWER_TIMEOUT_S,
        cpu=s.cpu,
        name="slack_e2e",
    )
    results.update(phase_results("slack", phase))
    calls = s.driver.calls_since(mark)
    results["slack_reads"] = reads(calls)
    light = await closed_loop(
        rotating(s, groups["light"], E2E_CHANNELS_PER_WORKER, SHORT_ANSWER),
        LIGHT_WORKERS,
        ramp_s=plan.ramp_s,
        seconds=plan.light_s,
        timeout_s=ANSWER_TIMEOUT_S,
        cpu=s.cpu,
        name="slack_light",
    )
    results.update(light_results("slack_light", light))
    results["slack_rss_mb"] = rounded(s.bot.rss_mb())
    return results


async def long_phases(s: Session, plan: Plan, groups: dict[str, list[str]]) -> Results:
    """20 channels streaming long answers at once, and beside them one counted answer.

    User i asks in fairness channel i, and user 0 the counted answer: people the bot
    met in the warm-up, as in a running workspace.
    """
    calls_channel = groups["calls"][SHORT_CALL_SAMPLES:][:1]
    results, counts = await asyncio.gather(
        fairness(s, groups["fair"], plan.fair_rounds),
        answer_calls(s, calls_channel, LONG_ANSWER, 0),
    )
    results.update(counts.results("slack_long", 1))
    return results


def fair_ask(s: Session, channels: list[str]) -> ChannelAsk:
    """User i asks in channel i."""

    async def ask(index: int, number: int) -> Pending:
        return await s.driver.ask(channels[index], number, LONG_ANSWER, index)

    return ask


async def fairness(s: Session, channels: list[str], rounds: int) -> Results:
    """Writes per channel and first visible text while every channel streams."""
    mark = len(s.driver.fake.calls)
    run = await stream_rounds(fair_ask(s, channels), len(channels), rounds, ANSWER_TIMEOUT_S)
    await settle_streams(s, run.answers)
    ours = set(channels)
    writes: dict[str, list[float]] = defaultdict(list)
    for call in s.driver.calls_since(mark):
        channel = call_channel(call)
        if call.method in TEXT_WRITES and call.ok and channel in ours:
            writes[channel].append(call.at)
    total_writes = sum(len(t) for t in writes.values())
    results: Results = {
        "slack_fair_channels": len(channels),
        "slack_fair_max_writes_1s": per_channel_max(writes, SLACK_WRITE_WINDOW_S),
        "slack_fair_writes_per_answer": rounded(total_writes / max(1, len(run.answers))),
        "slack_fair_workspace_writes_per_min": rounded(total_writes / run.seconds * 60),
    }
    results.update(fair_results("slack_fair", run, LONG_MODEL))
    return results


def channel_groups() -> dict[str, list[str]]:
    sizes = {
        "warm": USERS,
        "calls": CALL_CHANNELS,
        "e2e": E2E_WORKERS * E2E_CHANNELS_PER_WORKER,
        "light": LIGHT_WORKERS * E2E_CHANNELS_PER_WORKER,
        "fair": FAIR_CHANNELS,
    }
    groups, start = {}, 0
    for name, size in sizes.items():
        groups[name] = [channel_id(i) for i in range(start, start + size)]
        start += size
    return groups


async def run(opts: RunOptions) -> Results:
    plan = QUICK if opts.quick else FULL
    groups = channel_groups()
    async with session() as s:
        results = await fast_phases(s, plan, groups)
        results.update(await long_phases(s, plan, groups))
        results["slack_bot_warnings"] = s.bot.warnings()
    return results


BENCHMARK = Benchmark(
    name="slack",
    title="Slack end to end (slack_bolt Socket Mode against a fake Slack)",
    run=run,
    targets=(
        Target("slack_reads", "<=", 0),
        Target("slack_short_reads", "<=", 0),
        Target("slack_long_reads", "<=", 0),
        Target("slack_fair_first_text_over_ttft_p99_ms", "<", 100),
    ),
    keys=(
        "slack_msgs_per_s",
        "slack_p50_ms",
        "slack_p99_ms",
        "slack_light_p50_ms",
        "slack_reads",
        "slack_short_reads",
        "slack_short_posts",
        "slack_short_edits",
        "slack_short_typing",
        "slack_long_reads",
        "slack_long_posts",
        "slack_long_edits",
        "slack_fair_max_writes_1s",
        "slack_fair_first_text_p99_ms",
        "slack_fair_first_text_over_ttft_p99_ms",
    ),
)
