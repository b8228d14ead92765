"""A repeating failure is logged once, then once a minute, then once when it clears."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from bot.failure_log import FailureLog
from storage.sqlite import SqliteStore
from tests.store_support import FakeClock

LOGGER = logging.getLogger("tests.failure_log")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER.name]


@pytest.fixture
def clock(caplog: pytest.LogCaptureFixture) -> FakeClock:
    caplog.set_level(logging.INFO, LOGGER.name)
    clock = FakeClock()
    clock.now = 0.0
    return clock


def test_a_repeating_failure_is_one_line_a_minute_and_one_when_it_clears(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    failures = FailureLog(LOGGER, "storage: heartbeat failed", clock=clock)
    for second in range(150):  # a try a second for 150 s
        clock.now = float(second)
        failures.failed("database or disk is full")
    clock.now = 150.0
    failures.succeeded()
    failures.succeeded()  # working, and already said so
    assert lines(caplog) == [
        "storage: heartbeat failed: database or disk is full",
        "storage: heartbeat failed: database or disk is full"
        " (59 more failed tries since the last line)",
        "storage: heartbeat failed: database or disk is full"
        " (59 more failed tries since the last line)",
        "storage: heartbeat failed: working again after 150 s",
    ]


def test_a_new_failure_after_recovery_is_logged_at_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    failures = FailureLog(LOGGER, "usage", clock=clock)
    failures.failed("one")
    clock.now = 1.0
    failures.succeeded()
    clock.now = 2.0
    failures.failed("two")
    assert lines(caplog) == ["usage: one", "usage: working again after 1 s", "usage: two"]


async def test_a_store_whose_heartbeat_keeps_failing_logs_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk fails every beat (here 50 a second for 0.4 s): one line, not twenty."""
    store = SqliteStore(str(tmp_path / "bot.db"), heartbeat_s=0.02)
    await store.open()
    try:

        async def full_disk() -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(store, "_beat", full_disk)
        await asyncio.sleep(0.4)
    finally:
        await store.close()
    beats = [r for r in caplog.records if "heartbeat failed" in r.getMessage()]
    assert [r.getMessage() for r in beats] == [
        "storage: heartbeat failed: database or disk is full"
    ]
