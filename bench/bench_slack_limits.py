"""Slack under Slack's documented rate limits: busy channels, and many threads of one.

The same set-up as ``bench_slack`` (``python -m bot`` with the shipped config, real
slack_bolt over Socket Mode), but the fake Slack enforces the limits Slack documents
(``fakes/slack_limits.py``): chat.update Tier 3 (50/min), chat.appendStream
Tier 4 (100/min), chat.startStream and chat.stopStream Tier 2 (20/min), per workspace,
with bursts; chat.postMessage about one per second per channel (3 at once). Past a
limit it answers 429 with Retry-After and counts it. Everything runs in one workspace.
The model is the fast one (50 ms to first token, 20 chunks 5 ms apart: 150 ms).

* busy channels (``slack_limited_*``, ``slack_final_lag_*``): 64 users, each in its
  own channel, asking again as soon as its answer is complete (closed loop).
* one channel (``slack_threads20_*``): 20 people mention the bot in one channel at
  once, each starting a thread; 20 answers need 20 new messages in that channel.

``final_lag``: from the model's last token to the complete answer being visible,
taken as (question -> complete answer) minus the model's 150 ms, so it also holds
the bot's intake and the model request. 429s: answered by the fake in the phase.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

from fakes.slack_limits import DOCUMENTED

from .bench_platform_common import (
    FAST_MODEL,
    SHORT_ANSWER,
    AnswerTimeout,
    Pending,
    answered,
    closed_loop,
    ms,
)
from .bench_slack import ANSWER_TIMEOUT_S, TEXT_WRITES, Session, channel_id, session
from .common import Benchmark, Results, RunOptions, Target, percentile, rounded

log = logging.getLogger(__name__)

LOOP_CHANNELS = 64
THREADS = 20
FIRST_CHANNEL = 100_000  # channel ids apart from any other benchmark's
MODEL_S = (FAST_MODEL.ttft_ms + FAST_MODEL.chunks * FAST_MODEL.chunk_interval_ms) / 1000


@dataclass(frozen=True, slots=True)
class Plan:
    ramp_s: float
    loop_s: float
    threads: int


FULL = Plan(ramp_s=1.0, loop_s=10.0, threads=THREADS)
QUICK = Plan(ramp_s=0.5, loop_s=2.0, threads=8)


def lags(answers: list[Pending]) -> list[float]:
    """Model's last token -> complete answer visible, per answer (see the docstring)."""
    return [max(0.0, p.latency - MODEL_S) for p in answers if p.final_at is not None]


def limited_methods(s: Session, since: int) -> str:
    """Which methods got the 429s since call ``since`` (e.g. "chat.update 3")."""
    counts = Counter(c.method for c in s.driver.fake.calls[since:] if c.status == 429)
    return ", ".join(f"{m} {n}" for m, n in sorted(counts.items())) or "none"


def writes_in(s: Session, since: int) -> int:
    return sum(1 for c in s.driver.fake.calls[since:] if c.method in TEXT_WRITES and c.ok)


async def busy_channels(s: Session, plan: Plan) -> Results:
    """64 channels, closed loop: each user asks again as soon as its answer shows."""
    fake = s.driver.fake
    channels = [channel_id(FIRST_CHANNEL + i) for i in range(LOOP_CHANNELS)]
    done: list[Pending] = []

    async def ask(worker: int, n: int) -> Pending:
        pending = await s.driver.ask(channels[worker], n, SHORT_ANSWER)
        done.append(pending)
        return pending

    limited, calls = fake.limited, len(fake.calls)
    phase = await closed_loop(
        ask,
        LOOP_CHANNELS,
        ramp_s=plan.ramp_s,
        seconds=plan.loop_s,
        timeout_s=ANSWER_TIMEOUT_S,
        cpu=s.cpu,
        name="slack_limited",
    )
    window = [max(0.0, latency - MODEL_S) for latency in phase.latencies]
    return {
        "slack_limited_answers_per_s": rounded(phase.rate, 4),
        "slack_limited_answers": phase.completed,
        "slack_limited_errors": phase.errors,
        "slack_limited_429s": fake.limited - limited,
        "slack_limited_429_methods": limited_methods(s, calls),
        "slack_limited_writes_per_answer": rounded(writes_in(s, calls) / max(1, phase.finished)),
        "slack_limited_first_text_p50_ms": ms(percentile(phase.first_texts, 50)),
        "slack_final_lag_p50_ms": ms(percentile(window, 50)),
        "slack_final_lag_max_ms": ms(max(window, default=float("nan"))),
        # Every answer of the phase, the ramp's included (all 64 users start at once).
        "slack_limited_all_final_lag_max_ms": ms(max(lags(done), default=float("nan"))),
    }


async def one_channel(s: Session, plan: Plan) -> Results:
    """``plan.threads`` people mention the bot in one channel at once."""
    fake = s.driver.fake
    channel = channel_id(FIRST_CHANNEL + LOOP_CHANNELS)
    limited = fake.limited
    started = time.monotonic()
    asked = [await s.driver.ask(channel, n, SHORT_ANSWER) for n in range(plan.threads)]
    results = await asyncio.gather(
        *(answered(p, ANSWER_TIMEOUT_S) for p in asked), return_exceptions=True
    )
    errors = sum(1 for r in results if isinstance(r, AnswerTimeout))
    complete = [p for p in asked if p.final_at is not None]
    took = max((p.final_at or started) for p in complete) - started if complete else 0.0
    lag = lags(complete)
    return {
        "slack_threads20_threads": plan.threads,
        "slack_threads20_answers": len(complete),
        "slack_threads20_errors": errors,
        "slack_threads20_429s": fake.limited - limited,
        "slack_threads20_answers_per_s": rounded(len(complete) / took if took else 0.0, 4),
        "slack_threads20_final_lag_p50_ms": ms(percentile(lag, 50)),
        "slack_threads20_final_lag_max_ms": ms(max(lag, default=float("nan"))),
    }


async def run(opts: RunOptions) -> Results:
    plan = QUICK if opts.quick else FULL
    async with session() as s:
        s.driver.fake.limits = DOCUMENTED
        results = await busy_channels(s, plan)
        results.update(await one_channel(s, plan))
        results["slack_limits_bot_warnings"] = s.bot.warnings()
    return results


BENCHMARK = Benchmark(
    name="slack_limits",
    title="Slack under Slack's documented rate limits (64 busy channels; 20 threads of one)",
    run=run,
    targets=(
        Target("slack_final_lag_p50_ms", "<", 1500),
        Target("slack_limited_429s", "<=", 0),
        Target("slack_limited_errors", "<=", 0),
        Target("slack_threads20_429s", "<=", 0),
        Target("slack_threads20_errors", "<=", 0),
    ),
    keys=(
        "slack_limited_answers_per_s",
        "slack_limited_answers",
        "slack_limited_errors",
        "slack_limited_429s",
        "slack_final_lag_p50_ms",
        "slack_final_lag_max_ms",
        "slack_threads20_answers",
        "slack_threads20_errors",
        "slack_threads20_429s",
        "slack_threads20_answers_per_s",
        "slack_threads20_final_lag_p50_ms",
        "slack_threads20_final_lag_max_ms",
    ),
)
