"""Process-wide counters of what the bot does, for the metrics endpoint.

Plain integers and fixed-bucket histograms, bumped on the answer path at the cost
of a dict update: the Prometheus library is loaded only when ``metrics.port`` is
set, and bot/metrics.py turns these into metric families when it is scraped. One
process runs one bot, so one module-level :data:`EVENTS` is its natural home.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from .errors import LLMError
from .types import Answer, ChatMessage, ChatModel

# Seconds: a first token takes from a tenth of a second to tens of seconds; an answer
# up to the request deadline (openai.request_timeout_s, 90 s by default).
TIME_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(slots=True)
class Histogram:
    """Counts per bucket (the last one: above every bound) and the sum observed."""

    bounds: tuple[float, ...] = TIME_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass(slots=True)
class Events:
    """Everything the endpoint reports that is counted, not read at scrape time."""

    answers: int = 0  # model streams that ended normally
    errors: Counter[str] = field(default_factory=Counter)  # model failures by LLMError kind
    tokens_in: int = 0
    tokens_out: int = 0
    quota_refusals: Counter[str] = field(default_factory=Counter)  # by scope
    platform_429s: Counter[str] = field(default_factory=Counter)  # by platform
    dedupe_hits: int = 0  # redelivered messages recognised and dropped
    first_token_s: Histogram = field(default_factory=Histogram)
    answer_s: Histogram = field(default_factory=Histogram)


EVENTS = Events()


class MeasuredModel:
    """:class:`bot.types.ChatModel` that times the wrapped model's streams and counts
    their outcomes in :data:`EVENTS` (time to first text, total time, error kinds)."""

    def __init__(self, model: ChatModel, events: Events = EVENTS) -> None:
        self._model = model
        self._events = events

    async def stream(
        self, messages: list[ChatMessage], answer: Answer
    ) -> AsyncGenerator[str, None]:
        events = self._events
        started = time.monotonic()
        first = True
        deltas = self._model.stream(messages, answer)
        failed = False
        try:
            async for delta in deltas:
                if first:
                    first = False
                    events.first_token_s.observe(time.monotonic() - started)
                yield delta
        except LLMError as exc:
            failed = True
            events.errors[exc.kind] += 1
            raise
        except asyncio.CancelledError:
            failed = True
            raise
        finally:
            await deltas.aclose()
            # Closed early by the core (an answer at its cap) still counts as answered.
            if not failed and not first:
                events.answers += 1
                events.answer_s.observe(time.monotonic() - started)
