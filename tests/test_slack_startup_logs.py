"""Starting the Slack adapter logs no spurious bolt warnings, and real ones still show."""

from __future__ import annotations

import logging

import pytest

from bot.core import Core
from fakes.fake_openai import FakeOpenAI, reply
from fakes.fake_slack import FakeSlack
from tests.support import SLACK_CHANNEL as CHANNEL
from tests.support import deliver, fake_slack
from tests.support import running_slack as running

__all__ = ["fake_slack"]  # a fixture used here

BOLT_LOGGER = "adapters.slack.adapter.bolt"


async def test_start_up_logs_no_bolt_warnings_and_events_are_answered(
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    memory_core: Core,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As in production: bolt reads SLACK_BOT_TOKEN from the environment by itself.
    monkeypatch.setenv("SLACK_BOT_TOKEN", fake_slack.bot_token)
    fake_openai.script(reply("Hi there."))
    mention, _twin = fake_slack.mention("hello")
    with caplog.at_level(logging.INFO):
        async with running(fake_slack, memory_core) as adapter:
            await deliver(fake_slack, adapter, memory_core, mention)
            logging.getLogger(BOLT_LOGGER).warning("a real bolt warning")
    assert fake_slack.texts(CHANNEL, thread_ts=mention["event"]["ts"]) == ["Hi there."]
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("adapters.slack", "slack_"))
    ]
    assert warnings == ["a real bolt warning"]
