"""A message the store could not take is never acknowledged, and the user is told.

Slack (real slack_bolt over the fake Slack): no Socket Mode ack, an HTTP 5xx, so Slack
delivers the event again; once the store recovers the redelivery is stored and
answered. Discord (real discord.py over the fake Discord): a short reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from bot.app import EXIT_STORAGE
from bot.core import Core
from bot.texts import Texts
from fakes.fake_openai import FakeOpenAI, reply
from fakes.fake_slack import FakeSlack
from tests.failing_store import DISK_FULL, DISK_IO_ERROR, BrokenDiskStore
from tests.support import (
    ALICE,
    GENERAL,
    RUN_LIMIT_S,
    answered,
    bot_env,
    discord_at,
    fake_slack,
    http_app,
    mention,
    running_discord,
    spawn_bot,
    until,
)
from tests.support import SLACK_CHANNEL as CHANNEL
from tests.support import SLACK_WAIT_S as WAIT_S
from tests.support import discord_texts as texts
from tests.support import running_slack as running

CoreFactory = Callable[..., Awaitable[Core]]
REFUSED_LOG = "Unsuccessful Bolt execution result"  # slack_bolt: status != 200, no ack sent
__all__ = ["fake_slack"]  # the fixture, shared with the Slack end-to-end tests


@pytest_asyncio.fixture
async def broken_store(tmp_path: Path) -> AsyncIterator[BrokenDiskStore]:
    store = BrokenDiskStore(str(tmp_path / "bot.db"))
    await store.open()
    yield store
    await store.close()


def delivered_answers(db_path: Path) -> int:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        sql = "SELECT count(*) FROM turns WHERE role = 'assistant' AND delivered = 1"
        return int(db.execute(sql).fetchone()[0])


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.exc_text]


def storage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "disk I/O error" in r.getMessage()]


async def test_socket_mode_event_the_store_refused_is_not_acked_then_redelivered(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    broken_store: BrokenDiskStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    core = await core_factory(broken_store)
    fake_openai.script(reply("Stored at last."))
    mention, _twin = fake_slack.mention("remember this")
    ts = mention["event"]["ts"]
    async with running(fake_slack, core) as adapter:
        broken_store.failure = DISK_IO_ERROR
        envelope = await fake_slack.push(mention)
        await until(lambda: REFUSED_LOG in caplog.text, "bolt to refuse the event")
        assert envelope not in fake_slack.acks
        assert adapter.events_handled == 1
        assert fake_openai.request_count == 0
        # Slack redelivers the unacked envelope; the store works again.
        broken_store.failure = None
        await fake_slack.wait_ack(
            await fake_slack.push(mention, envelope_id=envelope, retry_attempt=1)
        )
        await until(lambda: adapter.events_handled == 2, "the listener")
        await asyncio.wait_for(core.drain(), WAIT_S)
    assert fake_slack.texts(CHANNEL, thread_ts=ts) == ["Stored at last."]
    assert fake_openai.request_count == 1
    assert len(storage_lines(caplog)) == 1  # one line for the failure ...
    assert tracebacks(caplog) == []  # ... and no traceback


async def test_http_event_the_store_refused_gets_a_5xx_then_the_retry_works(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    broken_store: BrokenDiskStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = await core_factory(broken_store)
    fake_openai.script(reply("Over HTTP, after all."))
    mention, _twin = fake_slack.mention("hi over http")
    async with http_app(fake_slack, core) as (adapter, url):
        broken_store.failure = DISK_FULL
        status, _ = await fake_slack.deliver(url, mention)
        assert status >= 500
        broken_store.failure = None
        assert (await fake_slack.deliver(url, mention, retry_num=1))[0] == 200
        await until(lambda: adapter.events_handled == 2, "the listener")
        await asyncio.wait_for(core.drain(), WAIT_S)
    assert fake_slack.texts(CHANNEL, mention["event"]["ts"]) == ["Over HTTP, after all."]
    assert tracebacks(caplog) == []
    refusals = [r for r in caplog.records if "No space left on device" in r.getMessage()]
    assert len(refusals) == 1


async def test_discord_message_the_store_refused_gets_a_short_reply(
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    broken_store: BrokenDiskStore,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy_env: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = await core_factory(broken_store, language="ko")
    fake_openai.script(reply("Now it is stored."))
    async with discord_at(monkeypatch) as fake, running_discord(fake, core):
        broken_store.failure = DISK_IO_ERROR
        await fake.send_message(GENERAL, ALICE, mention(fake, "hello"), mentions=(fake.bot,))
        await answered(fake, core, GENERAL)
        assert texts(fake, GENERAL) == [Texts("ko").get("error_storage")]
        assert fake_openai.request_count == 0
        broken_store.failure = None
        await fake.send_message(GENERAL, ALICE, mention(fake, "again"), mentions=(fake.bot,))
        await answered(fake, core, GENERAL, 2)
    assert texts(fake, GENERAL)[1:] == ["Now it is stored."]
    assert len(storage_lines(caplog)) == 1
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("failing", ["answer_failure", "load_failure"])
async def test_discord_answer_the_store_failed_mid_answer_says_storage_failed(
    failing: str,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    broken_store: BrokenDiskStore,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy_env: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The question was stored, then loading its history or storing its answer (after
    streaming it) failed: the user reads which of the two failed, not "something went
    wrong" nor that the message was not saved, and the log has one line."""
    core = await core_factory(broken_store, language="ko")
    fake_openai.script(reply("An answer that cannot be kept."))
    async with discord_at(monkeypatch) as fake, running_discord(fake, core):
        setattr(broken_store, failing, DISK_IO_ERROR)
        await fake.send_message(GENERAL, ALICE, mention(fake, "hello"), mentions=(fake.bot,))
        await answered(fake, core, GENERAL)
    shown = "\n".join(texts(fake, GENERAL))
    said = {"answer_failure": "error_storage_answer", "load_failure": "error_storage_read"}
    assert Texts("ko").get(said[failing]) in shown, shown
    assert Texts("ko").get("error_storage") not in shown
    assert Texts("ko").get("error_internal") not in shown
    assert len(storage_lines(caplog)) == 1
    assert tracebacks(caplog) == []


def child_pids(pid: int) -> list[int]:
    """The live children of ``pid`` (Linux: /proc/<pid>/task/*/children)."""
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").glob("*")
        for child in (task / "children").read_text().split()
    ]


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
async def test_console_reports_a_failing_disk_in_one_line_and_exits_non_zero(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.script(reply("First answer."))
    proc = await spawn_bot("console", env=bot_env(tmp_path, fake_openai))
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(b"first question\n")
    await proc.stdin.drain()
    line = await asyncio.wait_for(proc.stdout.readline(), RUN_LIMIT_S)
    assert line == b"answer: First answer.\n"
    await until(lambda: delivered_answers(tmp_path / "bot.db") == 1, "the answer's last write")
    # From now on the kernel refuses every write to a file by the bot and its SQLite
    # writer process (EFBIG), as a full disk would: SQLite fails the next commit with a
    # real I/O error.
    for pid in (proc.pid, *child_pids(proc.pid)):
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    proc.stdin.write(b"second question\n")
    await proc.stdin.drain()
    out, err = await asyncio.wait_for(proc.communicate(), RUN_LIMIT_S)
    assert proc.returncode == EXIT_STORAGE, err
    [reported] = err.decode().splitlines()
    prefix = Texts("en").get("console_storage_failed").split("{detail}")[0]
    assert reported.startswith(prefix), reported
    assert out == b""
    assert fake_openai.request_count == 1  # the second question never reached the model


async def test_slack_stop_intake_acks_events_being_stored_and_refuses_new_ones(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    broken_store: BrokenDiskStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    core = await core_factory(broken_store)
    fake_openai.script(reply("The one taken before the stop."))
    taken, _ = fake_slack.mention("stored while stopping")
    refused, _ = fake_slack.mention("arrives after the stop began", user="U0BOB")
    async with running(fake_slack, core) as adapter:
        broken_store.gate = asyncio.Event()  # a slow disk: storing waits
        first = await fake_slack.push(taken)
        await until(lambda: broken_store.waiting == 1, "the first event to reach the store")
        stopping = asyncio.ensure_future(adapter.stop_intake())
        second = await fake_slack.push(refused)
        await until(lambda: REFUSED_LOG in caplog.text, "bolt to refuse the second event")
        assert not stopping.done()  # the socket stays open for the event being stored
        broken_store.gate.set()
        await asyncio.wait_for(stopping, WAIT_S)
        await asyncio.wait_for(core.drain(), WAIT_S)
        assert fake_slack.open_sockets == 0
    assert first in fake_slack.acks
    assert second not in fake_slack.acks  # Slack delivers it again, to the next process
    assert fake_slack.texts(CHANNEL, thread_ts=taken["event"]["ts"]) == [
        "The one taken before the stop."
    ]
    assert fake_slack.texts(CHANNEL, thread_ts=refused["event"]["ts"]) == []
    assert fake_openai.request_count == 1
    assert tracebacks(caplog) == []
