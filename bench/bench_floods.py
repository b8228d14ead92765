"""Floods: what one person's flood costs everyone else (counts, and the wait it causes).

* core (``floods_*``): the core ``bot.app.running_core`` builds with the default
  configuration (20 messages a minute per person, 3 waiting per person and 20 per
  conversation, 32 model requests at once). One person sends FLOOD_MESSAGES messages
  into one conversation as fast as ``Core.handle`` takes them, then a second person
  asks there. Model: the fake OpenAI in this process, 50 ms to first token, 20 chunks
  5 ms apart. Reported: the notices the flooder got, the flooder's answers, the
  answers posted before the second person's, and the second person's wait from
  asking to a complete answer.
* slack (``floods_slack_*``): the Slack adapter (real slack_bolt over Socket Mode)
  against the fake Slack, one message mentioning SLACK_MENTIONS distinct people: the
  users.info calls before its ack and in all, and the ms from push to ack.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

from adapters.slack import SlackAdapter
from bot.config import SlackConfig
from bot.core import Core
from bot.types import ConversationKey, IncomingMessage, PlatformLimits
from fakes.fake_openai import FakeOpenAI
from fakes.fake_slack import FakeSlack

from .common import Benchmark, Results, RunOptions, Target, bench_config, bench_core, rounded

FLOOD_MESSAGES = 3000
SLACK_MENTIONS = 3000
TTFT_S = 0.05
CHUNKS = 20
CHUNK_INTERVAL_S = 0.005
FAST = PlatformLimits(
    max_len=2000, can_edit=True, edit_burst=1000, edit_rate=1000.0, min_edit_interval=0.0
)
KEY = ConversationKey("console", "w1", "flooded")
WAIT_S = 30.0
NOTICES = ("user_rate_limited", "too_many_waiting", "busy")


class _Channel:
    """One conversation as people see it: every message posted, who it answered."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str]] = []  # (whose message it answers, text)
        self._ids = itertools.count(1)

    def sink_for(self, person: str) -> _Sink:
        return _Sink(self, person)

    def post(self, person: str, text: str) -> tuple[str, int]:
        """Post a message; its id and its place in ``posts``."""
        self.posts.append((person, text))
        return str(next(self._ids)), len(self.posts) - 1


class _Sink:
    limits = FAST
    pace_key = "flooded"

    def __init__(self, channel: _Channel, person: str) -> None:
        self._channel = channel
        self._person = person
        self._index: dict[str, int] = {}

    async def typing(self) -> None:
        return None

    async def send(self, text: str) -> str:
        message_id, index = self._channel.post(self._person, text)
        self._index[message_id] = index
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        self._channel.posts[self._index[message_id]] = (self._person, text)


def _message(person: str, n: int, text: str) -> IncomingMessage:
    return IncomingMessage(
        key=KEY,
        message_id=f"{person}-{n}",
        author_id=person,
        author_name=person,
        text=text,
        sent_at=time.time(),
        addressed=True,
    )


def _notice_texts(core: Core) -> tuple[str, ...]:
    """The start of each notice a flood may get (up to the number in it)."""
    return tuple(core.texts.get(key).split("{")[0] for key in NOTICES)


async def _core_flood(fake: FakeOpenAI) -> Results:
    with tempfile.TemporaryDirectory(prefix="bench-floods-") as tmp:
        cfg = bench_config(f"{fake.base_url}/v1", Path(tmp) / "bot.db")
        async with bench_core(cfg) as (core, _watch):
            channel = _Channel()
            flooder, other = channel.sink_for("flooder"), channel.sink_for("other")
            for n in range(FLOOD_MESSAGES):
                await core.handle(_message("flooder", n, f"spam {n}"), flooder)
            started = time.perf_counter()
            await core.handle(_message("other", 0, "a real question"), other)
            await core.drain()
            waited = time.perf_counter() - started
            starts = _notice_texts(core)
            notices = [p for p in channel.posts if p[1].startswith(starts)]
            answers = [p for p in channel.posts if not p[1].startswith(starts)]
            whose = [person for person, _ in answers]
            before = whose.index("other") if "other" in whose else len(whose)
            return {
                "floods_messages": FLOOD_MESSAGES,
                "floods_notices": len(notices),
                "floods_flooder_answers": whose.count("flooder"),
                "floods_answers_before_second": before,
                "floods_second_wait_ms": rounded(waited * 1000),
                "floods_model_requests": fake.request_count,
            }


async def _slack_mentions(fake_model: FakeOpenAI) -> Results:
    with tempfile.TemporaryDirectory(prefix="bench-floods-") as tmp:
        cfg = bench_config(f"{fake_model.base_url}/v1", Path(tmp) / "bot.db")
        async with FakeSlack() as slack, bench_core(cfg) as (core, _watch):
            slack_cfg = SlackConfig(bot_token=slack.bot_token, app_token=slack.app_token)
            adapter = SlackAdapter(slack_cfg, core, api_base_url=slack.api_url)
            await adapter.start()
            try:
                everyone = " ".join(f"<@U1{i:07d}>" for i in range(SLACK_MENTIONS))
                body, _twin = slack.mention(f"hello {everyone}")
                started = time.perf_counter()
                envelope = await slack.push(body, within=WAIT_S)
                await slack.wait_ack(envelope, within=WAIT_S)
                ack_ms = (time.perf_counter() - started) * 1000
                before = slack.calls[: slack.calls_at_ack[envelope]]
                await core.drain()
                if adapter.names is not None:
                    await adapter.names.settled()
            finally:
                await adapter.stop()
            return {
                "floods_slack_mentions": SLACK_MENTIONS,
                "floods_slack_lookups_before_ack": sum(c.method == "users.info" for c in before),
                "floods_slack_lookups": len(slack.calls_to("users.info")),
                "floods_slack_ack_ms": rounded(ack_ms),
            }


async def run(opts: RunOptions) -> Results:
    """Both floods; the sizes are the issue's, small enough for --quick as they are."""
    async with FakeOpenAI(
        ttft_s=TTFT_S, chunks=CHUNKS, chunk_interval_s=CHUNK_INTERVAL_S, record=False
    ) as fake:
        results = await _core_flood(fake)
        results.update(await _slack_mentions(fake))
    return results


BENCHMARK = Benchmark(
    name="floods",
    title="Floods: one person's flood and a message with thousands of mentions",
    run=run,
    targets=(
        Target("floods_notices", "<=", 2),
        Target("floods_answers_before_second", "<=", 3),
        Target("floods_slack_lookups_before_ack", "<=", 0),
        Target("floods_slack_lookups", "<=", 20),
    ),
    keys=(
        "floods_messages",
        "floods_notices",
        "floods_flooder_answers",
        "floods_answers_before_second",
        "floods_second_wait_ms",
        "floods_model_requests",
        "floods_slack_mentions",
        "floods_slack_lookups_before_ack",
        "floods_slack_lookups",
        "floods_slack_ack_ms",
    ),
)
