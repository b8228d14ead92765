"""The operations endpoint: `python -m bot console` with metrics.port set, scraped
while it answers through the fake OpenAI; and its parts in process."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from adapters.slack import SlackAdapter
from bot.core import Core
from bot.events import Events, MeasuredModel
from bot.metrics import serving_metrics
from bot.ops import CoreProbe, core_gauges
from bot.types import Answer
from fakes.fake_discord import FakeDiscord
from fakes.fake_model import FakeModel, fails, says
from fakes.fake_openai import FakeOpenAI, reply
from fakes.fake_slack import FakeSlack
from tests.support import (
    ALICE,
    GENERAL,
    ROOT,
    answered,
    bot_env,
    deliver,
    fake_discord,
    fake_slack,
    mention,
    running_slack,
    settle,
    spawn_bot,
)
from tests.support import running_discord as running

__all__ = ["fake_discord", "fake_slack"]  # the fixtures, used by name

WAIT_S = 20.0  # a broken endpoint fails the test after this, never hangs it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def value(scraped: str, sample: str) -> float:
    """One sample's value from the exposition text (0 when it is not there)."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", scraped, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


POLL_S = 0.05


async def scraped_at_least(
    http: aiohttp.ClientSession, base: str, sample: str, least: float
) -> None:
    """Scrape until ``sample`` reaches ``least`` (the core counts just after the fake
    has sent the answer's end); fails after WAIT_S."""
    for _ in range(int(WAIT_S / POLL_S)):
        if value((await get(http, f"{base}/metrics"))[1], sample) >= least:
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"{sample} never reached {least}")


async def until_up(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(int(WAIT_S / POLL_S)):
        try:
            if (await get(http, url))[0] == 200:
                return
        except aiohttp.ClientConnectionError:
            pass  # not listening yet
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"{url} never answered")


async def test_the_endpoint_counts_a_real_conversation(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = bot_env(tmp_path, fake_openai, METRICS_PORT=str(port))
    fake_openai.default = reply("Hello from the fake.", usage=(40, 7))
    proc = await spawn_bot("console", env=env)
    assert proc.stdin is not None
    try:
        async with aiohttp.ClientSession() as http:
            await until_up(http, f"{base}/healthz")
            assert await get(http, f"{base}/readyz") == (200, "store: ok\nadapters: ok\n")
            proc.stdin.write(b"first question\n")
            await fake_openai.wait_for(lambda f: f.completed >= 1)
            await scraped_at_least(http, base, "chatbridge_answers_total", 1)
            fake_openai.gate.clear()  # the next answer waits: scrape it in flight
            proc.stdin.write(b"second question\n")
            await fake_openai.wait_for(lambda f: f.streaming >= 1)
            during = (await get(http, f"{base}/metrics"))[1]
            fake_openai.gate.set()
            await fake_openai.wait_for(lambda f: f.completed >= 2)
            await scraped_at_least(http, base, "chatbridge_answers_total", 2)
            after = (await get(http, f"{base}/metrics"))[1]
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), WAIT_S) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert value(during, "chatbridge_model_in_flight") == 1
    assert value(during, "chatbridge_busy_conversations") == 1
    assert value(during, "chatbridge_answers_total") == 1
    assert value(after, 'chatbridge_tokens_total{direction="in"}') == 80
    assert value(after, 'chatbridge_tokens_total{direction="out"}') == 14
    assert value(after, "chatbridge_model_first_token_seconds_count") == 2
    assert value(after, "chatbridge_model_answer_seconds_count") == 2
    assert value(after, 'chatbridge_model_answer_seconds_bucket{le="+Inf"}') == 2


async def test_without_a_port_the_prometheus_library_is_never_loaded() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys, bot.app; print('prometheus_client' in sys.modules)",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert out.strip() == b"False"


async def test_model_errors_are_counted_by_kind() -> None:
    events = Events()
    model = MeasuredModel(FakeModel(fails("rate_limited"), says("ok")), events)
    with pytest.raises(Exception, match="rate_limited"):
        async for _ in model.stream([], Answer()):
            pass
    async for _ in model.stream([], Answer()):
        pass
    assert events.errors == {"rate_limited": 1} and events.answers == 1


class DownProbe:
    async def store_ok(self) -> bool:
        raise OSError("connection refused")

    def adapters_ok(self) -> bool:
        return False


async def test_readyz_says_what_is_not_ready_and_discord_429s_are_counted() -> None:
    events = Events()
    async with (
        serving_metrics("127.0.0.1", 0, DownProbe(), dict, events) as port,
        aiohttp.ClientSession() as http,
    ):
        logging.getLogger("discord.http").warning(
            "We are being rate limited. %s %s responded with 429. Retrying in %.2f seconds.",
            "POST",
            "/channels/1/messages",
            0.5,
        )
        base = f"http://127.0.0.1:{port}"
        status, text = await get(http, f"{base}/readyz")
        assert (status, text) == (503, "store: unreachable\nadapters: not connected\n")
        assert await get(http, f"{base}/healthz") == (200, "ok\n")
        scraped = (await get(http, f"{base}/metrics"))[1]
    assert value(scraped, 'chatbridge_platform_rate_limited_total{platform="discord"}') == 1


async def test_readyz_probed_every_second_while_the_store_is_down_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        serving_metrics("127.0.0.1", 0, DownProbe(), dict, Events()) as port,
        aiohttp.ClientSession() as http,
    ):
        for _ in range(12):  # a load balancer's probes
            assert (await get(http, f"http://127.0.0.1:{port}/readyz"))[0] == 503
    lines = [r.getMessage() for r in caplog.records if "readyz" in r.getMessage()]
    assert lines == ["readyz: the store did not answer: connection refused"]


async def test_discord_429s_and_redeliveries_move_the_counters(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    probe = CoreProbe(memory_core, ())
    async with (
        serving_metrics("127.0.0.1", 0, probe, lambda: core_gauges(memory_core)) as port,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{port}"
        before = (await get(http, f"{base}/metrics"))[1]
        fake_discord.rate_limit("POST", rf"/channels/{GENERAL}/messages", retry_after=0.05)
        async with running(fake_discord, memory_core):
            sent = await fake_discord.send_message(
                GENERAL, ALICE, mention(fake_discord, "hi"), mentions=(fake_discord.bot,)
            )
            await answered(fake_discord, memory_core, GENERAL)
            await fake_discord.dispatch("MESSAGE_CREATE", sent)  # the same event again
            dedupe = "chatbridge_dedupe_hits_total"
            await scraped_at_least(http, base, dedupe, value(before, dedupe) + 1)
            await settle(memory_core)
        after = (await get(http, f"{base}/metrics"))[1]
    for sample in (
        'chatbridge_platform_rate_limited_total{platform="discord"}',
        "chatbridge_dedupe_hits_total",
    ):
        assert value(after, sample) == value(before, sample) + 1, sample
    assert value(after, "chatbridge_busy_conversations") == 0


async def test_slack_429s_move_the_counter_and_readyz_follows_the_adapter(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    started: list[SlackAdapter] = []
    probe = CoreProbe(memory_core, started)
    async with (
        serving_metrics("127.0.0.1", 0, probe, lambda: core_gauges(memory_core)) as port,
        aiohttp.ClientSession() as http,
    ):
        base = f"http://127.0.0.1:{port}"
        sample = 'chatbridge_platform_rate_limited_total{platform="slack"}'
        before = value((await get(http, f"{base}/metrics"))[1], sample)
        async with running_slack(fake_slack, memory_core) as adapter:
            started.append(adapter)
            assert (await get(http, f"{base}/readyz"))[0] == 200
            fake_slack.rate_limit("chat.postMessage", retry_after=0)
            mention, twin = fake_slack.mention("hello?")
            await deliver(fake_slack, adapter, memory_core, mention, twin)
        assert (await get(http, f"{base}/readyz")) == (503, "store: ok\nadapters: not connected\n")
        after = value((await get(http, f"{base}/metrics"))[1], sample)
    assert after == before + 1
