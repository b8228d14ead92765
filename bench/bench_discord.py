"""Discord end to end: the real discord.py in ``python -m bot`` against a fake Discord.

The fake Discord (``fakes.fake_discord``, in this process) enforces Discord's
per-channel message window, 5 writes per 5 s (``channel_write_limit=(5, 5.0)``),
and sends the X-RateLimit headers discord.py obeys; a 429 means the bot overran it.
A question is a gateway MESSAGE_CREATE mentioning the bot, from one of 4,096 people
(nobody reaches the per-person limit); its answer is "visible" when the fake applies
the write (POST or PATCH) whose content is the full answer (for a multi-message
answer: the write that completes its last message). Latencies run from just before
the gateway dispatch to that write; "first text" to the first write with any text.
One bot process runs every phase, in this order:

* e2e (``discord_msgs_per_s``, ``discord_p50_ms``, ``discord_p99_ms``): 32 users ask
  again as soon as their answer is visible, each rotating over its own 24 channels so
  no channel reaches Discord's window: the bot's own throughput and latency, here
  limited by its CPU. Model: 50 ms to first token, 20 chunks 5 ms apart (145 ms).
  ``discord_light_*``: the same with 4 users (no queueing for the CPU).
* calls per answer (``discord_short_*``, ``discord_long_*``): every REST call the
  fake received for one question in a quiet channel; a short answer (3 samples) and
  a 5,000-character one (300 ms to first token, 3 s of streaming, three messages).
* llmcord's workload (``llmcord_workload_*``): 64 channels, each mentioning the bot
  again as soon as its answer is complete, model as in e2e. Run twice: with the
  window off (``llmcord_workload_nowindow_*``), which is what the bot itself can do
  and what llmcord's reference numbers compare with, then under Discord's window:
  one channel shows at most 2.5 answers per 5 s (each answer is a post plus a final
  edit), a ceiling of 32 answers/s for 64 channels.
* fairness (``discord_fair_*``): 20 channels stream long answers at once, two rounds
  back to back (quick: one); 429s, the busiest channel's writes in any 5 s (sliding;
  Discord's own window is fixed, so up to 2 x 5 can pass without a 429), first
  visible text after the model's first token; the long-answer calls are counted
  in a 21st channel meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes.fake_discord import (
    FakeDiscord,
    JsonDict,
    Reply,
    RestCall,
    guild,
    member,
    text_channel,
    user,
)

from .bench_platform_common import (
    LONG_ANSWER,
    LONG_MODEL,
    SHORT_ANSWER,
    Ask,
    BotProcess,
    CallCounts,
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

BOT_TOKEN = "bench-discord-bot-token"
WRITE_WINDOW = (5, 5.0)  # Discord: 5 message writes per 5 s per channel
GUILD_CHANNELS = 250  # channels per fake server (Discord allows 500)
FIRST_GUILD_ID = 710_000_000_000_000_000
FIRST_CHANNEL_ID = 720_000_000_000_000_000
FIRST_USER_ID = 730_000_000_000_000_000
AUTHORS = 4096  # distinct people: nobody reaches the per-person limit (20 a minute)
E2E_WORKERS = 32
LIGHT_WORKERS = 4  # light load: latency without queueing for the CPU
E2E_CHANNELS_PER_WORKER = 24  # a channel then sees a question every few seconds at most
LLMCORD_CHANNELS = 64
FAIR_CHANNELS = 20
CALL_CHANNELS = 4
SHORT_CALL_SAMPLES = 3
ANSWER_TIMEOUT_S = 30.0
SETTLE_S = 1.2  # longer than the bot's edit interval (1 s): late writes are counted
MESSAGE_PATH = re.compile(r"/channels/(\d+)/messages(?:/\d+)?")
TYPING_PATH = re.compile(r"/channels/\d+/typing")
CHANNEL_PATH = re.compile(r"/channels/(\d+)(?:/|$)")


@dataclass(frozen=True, slots=True)
class Plan:
    warmup_s: float
    ramp_s: float
    e2e_s: float
    light_s: float
    llmcord_s: float
    fair_rounds: int


FULL = Plan(warmup_s=2.0, ramp_s=1.0, e2e_s=10.0, light_s=4.0, llmcord_s=20.0, fair_rounds=2)
QUICK = Plan(warmup_s=0.5, ramp_s=0.5, e2e_s=1.5, light_s=1.0, llmcord_s=2.0, fair_rounds=1)


# -- the fake, watched --------------------------------------------------------------

OnPost = Callable[[str, str, str, str, float], None]  # channel, message, question, text, at
OnEdit = Callable[[str, str, str, float], None]  # channel, message, text, at


class WatchedDiscord(FakeDiscord):
    """The fake Discord, telling the driver about each message write it applies."""

    def __init__(self, on_post: OnPost, on_edit: OnEdit, **options: Any) -> None:
        super().__init__(**options)
        self._on_post = on_post
        self._on_edit = on_edit

    async def _create_message(self, body: Any, channel_id: str) -> Reply:
        at = time.monotonic()  # the fake stores the message before its first await
        reply = await super()._create_message(body, channel_id)
        status, data, _ = reply
        if status == 200:
            reference = (body or {}).get("message_reference") or {}
            question = str(reference.get("message_id") or "")
            self._on_post(channel_id, data["id"], question, data["content"], at)
        return reply

    async def _edit_message(self, body: Any, channel_id: str, message_id: str) -> Reply:
        at = time.monotonic()
        reply = await super()._edit_message(body, channel_id, message_id)
        status, data, _ = reply
        if status == 200:
            self._on_edit(channel_id, message_id, data["content"], at)
        return reply


class Driver:
    """Plays the users: mentions the bot and follows each answer to its final text."""

    def __init__(self, channels: int) -> None:
        self.tracker = Tracker()
        self.fake = WatchedDiscord(
            self._posted, self._edited, token=BOT_TOKEN, channel_write_limit=WRITE_WINDOW
        )
        self._answer_of: dict[str, str] = {}  # bot message id -> question id
        self._asking: dict[str, str] = {}  # channel -> question in flight there
        self._authors = itertools.cycle(
            user(str(FIRST_USER_ID + i), f"user{i}", global_name=f"User {i}")
            for i in range(AUTHORS)
        )
        self.channels = [str(FIRST_CHANNEL_ID + i) for i in range(channels)]
        self._build_world()

    def _build_world(self) -> None:
        for index in range(0, len(self.channels), GUILD_CHANNELS):
            chunk = self.channels[index : index + GUILD_CHANNELS]
            gid = str(FIRST_GUILD_ID + index)
            owner = str(FIRST_USER_ID + AUTHORS)
            made = [text_channel(cid, f"bench-{index + i}") for i, cid in enumerate(chunk)]
            self.fake.add_guild(
                guild(gid, f"Bench {index // GUILD_CHANNELS}", owner_id=owner, channels=made)
            )

    def _posted(self, channel: str, message: str, question: str, text: str, at: float) -> None:
        question = question or self._asking.get(channel, "")  # later parts are not replies
        self._answer_of[message] = question
        self.tracker.seen(question, text, at)

    def _edited(self, channel: str, message: str, text: str, at: float) -> None:
        self.tracker.seen(self._answer_of.get(message, ""), text, at)

    async def ask(self, channel: str, n: int, answer: str) -> Pending:
        """Mention the bot in ``channel``; the Pending follows the answer."""
        fake = self.fake
        author = next(self._authors)
        text = f"<@{fake.bot['id']}> {question(n, answer)}"
        data: JsonDict = fake.user_message(channel, author, text, mentions=(fake.bot,))
        data["member"] = {k: v for k, v in member(author).items() if k != "user"}
        self._asking[channel] = data["id"]
        pending = self.tracker.open(data["id"], answer, time.monotonic())
        await fake.dispatch("MESSAGE_CREATE", data)
        return pending

    def calls_since(self, index: int) -> list[RestCall]:
        return self.fake.calls[index:]


# -- running the bot -----------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """The bot process, the fake model and the fake Discord they talk to."""

    driver: Driver
    bot: BotProcess
    model: FakeServer
    started_s: float

    @property
    def cpu(self) -> Cpu:
        return Cpu(bot=self.bot.cpu_seconds, model=self.model.cpu_seconds, bot_pid=self.bot.pid)


@contextlib.asynccontextmanager
async def session(channels: int) -> AsyncIterator[Session]:
    """Fake Discord + fake model + ``python -m bot``, ready to answer."""
    driver = Driver(channels)
    async with driver.fake, two_speed_model() as model:
        with tempfile.TemporaryDirectory(prefix="bench-discord-") as tmp:
            env = {"DISCORD_BOT_TOKEN": BOT_TOKEN, "DISCORD_API_URL": driver.fake.api_base}
            spawned = time.monotonic()
            async with bot_process(model.base_url, Path(tmp), env) as bot:
                # Registering the slash commands is the adapter's last start-up step.
                await wait_ready(bot, lambda: bool(driver.fake.commands), "connect to Discord")
                started = time.monotonic() - spawned
                log.info("bot ready after %.1f s", started)
                yield Session(driver, bot, model, started)
                bot.check_alive()


# -- phases ---------------------------------------------------------------------------


def classify(call: RestCall) -> tuple[str, str]:
    """(kind, name) of a REST call for the calls-per-answer counts."""
    if call.method == "GET":
        return "reads", f"GET {call.path}"
    if TYPING_PATH.fullmatch(call.path):
        return "typing", "typing"
    if MESSAGE_PATH.fullmatch(call.path):
        if call.method == "POST":
            return "posts", "post"
        if call.method == "PATCH":
            return "edits", "edit"
    return "other", f"{call.method} {call.path}"


async def answer_calls(s: Session, channels: list[str], answer: str) -> CallCounts:
    """Answer one question in each (quiet) channel in turn; count the REST calls made.

    Calls on other channels (the tail of an earlier phase) are left out.
    """
    first = len(s.driver.fake.calls)
    for n, channel in enumerate(channels):
        await answered(await s.driver.ask(channel, n, answer), ANSWER_TIMEOUT_S)
    await settle(SETTLE_S)
    ours = set(channels)
    calls = [c for c in s.driver.calls_since(first) if call_channel(c) in ours | {None}]
    return count_calls(classify(c) for c in calls)


def call_channel(call: RestCall) -> str | None:
    """The channel a REST call acts on, if any."""
    match = CHANNEL_PATH.match(call.path)
    return match.group(1) if match else None


def rotating(s: Session, channels: list[str], per_worker: int, answer: str) -> Ask:
    """An Ask where worker i cycles over its own ``per_worker`` channels."""

    async def ask(worker: int, n: int) -> Pending:
        channel = channels[worker * per_worker + n % per_worker]
        return await s.driver.ask(channel, n, answer)

    return ask


def limited(calls: list[RestCall]) -> int:
    return sum(1 for c in calls if c.status == 429)


def reads(calls: list[RestCall]) -> int:
    return sum(1 for c in calls if c.method == "GET")


async def fast_phases(s: Session, plan: Plan, groups: dict[str, list[str]]) -> Results:
    """Warm-up, short-answer calls, e2e load and llmcord's workload, on one bot."""
    results: Results = {
        "discord_bot_start_s": rounded(s.started_s),
        "discord_bot_rss_start_mb": rounded(s.bot.rss_mb()),  # connected, nothing answered yet
    }
    fake, cpu = s.driver.fake, s.cpu
    e2e = rotating(s, groups["e2e"], E2E_CHANNELS_PER_WORKER, SHORT_ANSWER)
    warm = await closed_loop(
        e2e,
        E2E_WORKERS,
        ramp_s=0.0,
        seconds=plan.warmup_s,
        timeout_s=ANSWER_TIMEOUT_S,
        cpu=cpu,
        name="discord_warmup",
    )
    if not warm.finished or warm.errors:
        raise RuntimeError(f"warm-up: {warm.finished} answered, {warm.errors} timed out")

    counts = await answer_calls(s, groups["calls"][:SHORT_CALL_SAMPLES], SHORT_ANSWER)
    results.update(counts.results("discord_short", SHORT_CALL_SAMPLES))

    mark = len(fake.calls)
    phase = await closed_loop(
        e2e,
        E2E_WORKERS,
        ramp_s=plan.ramp_s,
        seconds=plan.e2e_s,
        timeout_s=ANSWER_TIMEOUT_S,
        cpu=cpu,
        name="discord_e2e",
    )
    results.update(phase_results("discord", phase))
    load_calls = s.driver.calls_since(mark)
    results["discord_429s"] = limited(load_calls)
    results["discord_reads"] = reads(load_calls)
    light = await closed_loop(
        rotating(s, groups["light"], E2E_CHANNELS_PER_WORKER, SHORT_ANSWER),
        LIGHT_WORKERS,
        ramp_s=plan.ramp_s,
        seconds=plan.light_s,
        timeout_s=ANSWER_TIMEOUT_S,
        cpu=cpu,
        name="discord_light",
    )
    results.update(light_results("discord_light", light))
    results.update(await llmcord_phases(s, plan, groups))
    return results


async def llmcord_phases(s: Session, plan: Plan, groups: dict[str, list[str]]) -> Results:
    """64 channels, each asking again when its answer is complete; window off, then on."""
    fake, cpu = s.driver.fake, s.cpu
    results: Results = {"llmcord_workload_rss_before_mb": rounded(s.bot.rss_mb())}
    for name, window in (("nowindow", None), ("window", WRITE_WINDOW)):
        fake.channel_write_limit = window
        channels = groups[f"llmcord_{name}"]

        async def ask(worker: int, n: int, channels: list[str] = channels) -> Pending:
            return await s.driver.ask(channels[worker], n, SHORT_ANSWER)

        prefix = "llmcord_workload" if window else "llmcord_workload_nowindow"
        seconds = plan.llmcord_s
        if window:
            # At least two windows: a fast bot finishes each channel's first two
            # answers within the ramp, and the third waits for the window to reset.
            seconds = max(seconds, 2 * window[1])
        mark = len(fake.calls)
        phase = await closed_loop(
            ask,
            LLMCORD_CHANNELS,
            ramp_s=plan.ramp_s,
            seconds=seconds,
            timeout_s=ANSWER_TIMEOUT_S,
            cpu=cpu,
            name=prefix,
        )
        results.update(phase_results(prefix, phase, rate_key="answers_per_s"))
        results[f"{prefix}_rss_mb"] = rounded(s.bot.rss_mb())
        calls = s.driver.calls_since(mark)
        results[f"{prefix}_429s"] = limited(calls)
        results[f"{prefix}_reads"] = reads(calls)
    fake.channel_write_limit = WRITE_WINDOW
    writes, seconds = WRITE_WINDOW
    # Each answer takes a post and a final edit; a channel holds `writes` per window.
    results["llmcord_workload_window_ceiling_answers_per_s"] = rounded(
        LLMCORD_CHANNELS * writes / seconds / 2
    )
    return results


async def long_phases(s: Session, plan: Plan, groups: dict[str, list[str]]) -> Results:
    """20 channels streaming long answers at once, and beside them one counted answer."""
    calls_channel = groups["calls"][SHORT_CALL_SAMPLES:][:1]
    results, counts = await asyncio.gather(
        fairness(s, groups["fair"], plan.fair_rounds),
        answer_calls(s, calls_channel, LONG_ANSWER),
    )
    results.update(counts.results("discord_long", 1))
    return results


async def fairness(s: Session, channels: list[str], rounds: int) -> Results:
    """Every channel asks ``rounds`` questions back to back, all channels at once."""
    fake = s.driver.fake
    mark = len(fake.calls)

    async def ask(index: int, number: int) -> Pending:
        return await s.driver.ask(channels[index], number, LONG_ANSWER)

    run = await stream_rounds(ask, len(channels), rounds, ANSWER_TIMEOUT_S)
    await settle(SETTLE_S)
    calls = s.driver.calls_since(mark)
    ours = set(channels)
    writes: dict[str, list[float]] = defaultdict(list)
    for call in calls:
        match = MESSAGE_PATH.fullmatch(call.path)
        if match and call.method in ("POST", "PATCH") and call.status == 200:
            if match.group(1) in ours:
                writes[match.group(1)].append(call.at)
    _, window = WRITE_WINDOW
    results: Results = {
        "discord_fair_channels": len(channels),
        "discord_fair_429s": limited(calls),  # the counted 21st channel included
        "discord_fair_reads": reads(calls),
        "discord_fair_max_writes_5s": per_channel_max(writes, window),
        "discord_fair_writes_per_answer": rounded(
            sum(len(t) for t in writes.values()) / max(1, len(run.answers))
        ),
    }
    results.update(fair_results("discord_fair", run, LONG_MODEL))
    return results


def channel_groups() -> tuple[int, Callable[[list[str]], dict[str, list[str]]]]:
    """How many channels the world needs, and how to split them into groups."""
    sizes = {
        "calls": CALL_CHANNELS,
        "e2e": E2E_WORKERS * E2E_CHANNELS_PER_WORKER,
        "light": LIGHT_WORKERS * E2E_CHANNELS_PER_WORKER,
        "llmcord_nowindow": LLMCORD_CHANNELS,
        "llmcord_window": LLMCORD_CHANNELS,
        "fair": FAIR_CHANNELS,
    }

    def split(channels: list[str]) -> dict[str, list[str]]:
        groups, start = {}, 0
        for name, size in sizes.items():
            groups[name] = channels[start : start + size]
            start += size
        return groups

    return sum(sizes.values()), split


async def run(opts: RunOptions) -> Results:
    plan = QUICK if opts.quick else FULL
    total, split = channel_groups()
    async with session(total) as s:
        groups = split(s.driver.channels)
        results = await fast_phases(s, plan, groups)
        results.update(await long_phases(s, plan, groups))
        results["discord_bot_warnings"] = s.bot.warnings()
    return results


BENCHMARK = Benchmark(
    name="discord",
    title="Discord end to end (discord.py against a fake Discord)",
    run=run,
    targets=(
        Target("discord_429s", "<=", 0),
        Target("discord_reads", "<=", 0),
        Target("discord_short_reads", "<=", 0),
        Target("discord_long_reads", "<=", 0),
        Target("discord_fair_429s", "<=", 0),
        Target("discord_fair_first_text_over_ttft_p99_ms", "<", 100),
        Target("llmcord_workload_429s", "<=", 0),
        Target("llmcord_workload_nowindow_answers_per_s", ">=", 180),
        Target("llmcord_workload_nowindow_p99_ms", "<", 300),
    ),
    keys=(
        "discord_msgs_per_s",
        "discord_p50_ms",
        "discord_p99_ms",
        "discord_429s",
        "discord_reads",
        "discord_light_p50_ms",
        "discord_short_reads",
        "discord_short_posts",
        "discord_short_edits",
        "discord_short_typing",
        "discord_long_reads",
        "discord_long_posts",
        "discord_long_edits",
        "discord_fair_429s",
        "discord_fair_max_writes_5s",
        "discord_fair_first_text_p99_ms",
        "discord_fair_first_text_over_ttft_p99_ms",
        "llmcord_workload_answers_per_s",
        "llmcord_workload_p50_ms",
        "llmcord_workload_p99_ms",
        "llmcord_workload_first_text_p50_ms",
        "llmcord_workload_rss_mb",
        "llmcord_workload_429s",
        "llmcord_workload_nowindow_answers_per_s",
        "llmcord_workload_nowindow_p50_ms",
        "llmcord_workload_nowindow_p99_ms",
        "llmcord_workload_nowindow_first_text_p50_ms",
    ),
)
