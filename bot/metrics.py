"""The operations endpoint (``metrics.port``; off by default): Prometheus metrics at
``/metrics``, ``/healthz`` (the process answers) and ``/readyz`` (the store answers
and every adapter is connected).

The counts come from bot/events.py, read when Prometheus scrapes: nothing here runs
while the bot answers. discord.py handles Discord's 429s itself and only logs them,
so its ``discord.http`` logger is watched for that one line while the endpoint runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from .events import EVENTS, Events, Histogram
from .failure_log import FailureLog

log = logging.getLogger(__name__)

PREFIX = "chatbridge"
READY_TIMEOUT_S = 2.0  # a store that takes longer to answer is not ready
SHUTDOWN_TIMEOUT_S = 1.0
DISCORD_HTTP_LOGGER = "discord.http"
DISCORD_429_TEXT = "We are being rate limited"  # discord.py's log line for a 429


class Probe(Protocol):
    """What /readyz asks: the store (any cheap read) and the adapters."""

    async def store_ok(self) -> bool: ...

    def adapters_ok(self) -> bool: ...


Gauges = Callable[[], dict[str, float]]  # name -> value, read at scrape time


class _EventsCollector(Collector):
    """bot/events.py's counts, and the gauges, as Prometheus metric families."""

    def __init__(self, events: Events, gauges: Gauges) -> None:
        self._events = events
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        ev = self._events
        yield CounterMetricFamily(
            f"{PREFIX}_answers", "Model answers streamed to the end", ev.answers
        )
        yield _labelled(f"{PREFIX}_model_errors", "Model calls failed for good", "kind", ev.errors)
        tokens = CounterMetricFamily(f"{PREFIX}_tokens", "Tokens used", labels=["direction"])
        tokens.add_metric(["in"], ev.tokens_in)
        tokens.add_metric(["out"], ev.tokens_out)
        yield tokens
        yield _labelled(
            f"{PREFIX}_quota_refusals",
            "Answers a quota refused or rerouted",
            "scope",
            ev.quota_refusals,
        )
        yield _labelled(
            f"{PREFIX}_platform_rate_limited",
            "429 answers from a platform",
            "platform",
            ev.platform_429s,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_dedupe_hits", "Redelivered messages dropped", ev.dedupe_hits
        )
        yield _histogram(
            f"{PREFIX}_model_first_token_seconds", "Model time to first text", ev.first_token_s
        )
        yield _histogram(f"{PREFIX}_model_answer_seconds", "Model time per answer", ev.answer_s)
        for name, value in self._gauges().items():
            yield GaugeMetricFamily(f"{PREFIX}_{name}", name.replace("_", " "), value)


def _labelled(name: str, doc: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*map(str, hist.bounds), "+Inf"), hist.counts, strict=True):
        running += count
        buckets.append((bound, running))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.total)


class _Discord429s(logging.Filter):
    """Counts discord.py's 429 log lines; lets every record through."""

    def __init__(self, events: Events) -> None:
        super().__init__()
        self._events = events

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(DISCORD_429_TEXT):
            self._events.platform_429s["discord"] += 1
        return True


def build_app(probe: Probe, gauges: Gauges, events: Events = EVENTS) -> web.Application:
    """The endpoint's routes on a registry of their own (no process-wide state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_EventsCollector(events, gauges))

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    store_failures = FailureLog(log, "readyz: the store did not answer")  # once a minute

    async def readyz(_request: web.Request) -> web.Response:
        store = await _store_ok(probe, store_failures)
        adapters = probe.adapters_ok()
        status = 200 if store and adapters else 503
        text = f"store: {'ok' if store else 'unreachable'}\n"
        text += f"adapters: {'ok' if adapters else 'not connected'}\n"
        return web.Response(status=status, text=text)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _store_ok(probe: Probe, failures: FailureLog) -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            ok = await probe.store_ok()
    except Exception as exc:  # any failure means not ready; the reason goes to the log
        failures.failed(str(exc) or type(exc).__name__)
        return False
    if ok:
        failures.succeeded()
    return ok


@contextlib.asynccontextmanager
async def serving_metrics(
    host: str, port: int, probe: Probe, gauges: Gauges, events: Events = EVENTS
) -> AsyncIterator[int]:
    """Serve the endpoint on ``host:port`` (0: a free port) while inside; yields the port."""
    runner = web.AppRunner(
        build_app(probe, gauges, events),
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        handle_signals=False,
    )
    await runner.setup()
    watcher = _Discord429s(events)
    discord_http = logging.getLogger(DISCORD_HTTP_LOGGER)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = _bound_port(runner, port)
        discord_http.addFilter(watcher)
        log.info("metrics on http://%s:%d/metrics", host, bound)
        yield bound
    finally:
        discord_http.removeFilter(watcher)
        await runner.cleanup()


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked


def adapters_connected(adapters: Sequence[object]) -> bool:
    """Whether every adapter says it is connected (one without a ``connected``
    property counts as connected once started)."""
    return all(bool(getattr(adapter, "connected", True)) for adapter in adapters)
