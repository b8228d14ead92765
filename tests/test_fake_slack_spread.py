"""The fake Slack spreads Socket Mode events over an app's open connections and
retries an unacknowledged one on the next connection, as Slack does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from fakes.fake_slack import FakeSlack
from tests.support import fake_slack

__all__ = ["fake_slack"]  # the fixture, used by name

ACK_WITHIN_S = 0.3


class Connection:
    """A bare Socket Mode client: records envelopes, acks them unless told not to."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, acks: bool) -> None:
        self.ws = ws
        self.acks = acks
        self.envelopes: list[dict[str, Any]] = []

    async def run(self) -> None:
        async for frame in self.ws:
            data = json.loads(frame.data)
            if data.get("type") != "events_api":
                continue
            self.envelopes.append(data)
            if self.acks:
                await self.ws.send_str(json.dumps({"envelope_id": data["envelope_id"]}))


@pytest.fixture
async def connected(fake_slack: FakeSlack) -> AsyncIterator[list[Connection]]:
    """Two connections of one app: the first never acknowledges."""
    async with aiohttp.ClientSession() as session:
        url = f"ws://127.0.0.1:{fake_slack.port}/socket"
        connections = [Connection(await session.ws_connect(url), acks) for acks in (False, True)]
        tasks = [asyncio.create_task(c.run()) for c in connections]
        await fake_slack.wait_until(lambda: fake_slack.open_sockets == 2)
        yield connections
        for connection, task in zip(connections, tasks, strict=True):
            await connection.ws.close()
            task.cancel()


async def test_events_go_to_the_connections_in_turn(
    fake_slack: FakeSlack, connected: list[Connection]
) -> None:
    for n in range(4):
        body, _ = fake_slack.mention(f"m{n}")
        await fake_slack.push(body)
    await fake_slack.wait_until(lambda: len(connected[1].envelopes) == 2)
    assert [len(c.envelopes) for c in connected] == [2, 2]


async def test_an_unacknowledged_event_is_retried_on_the_next_connection(
    fake_slack: FakeSlack, connected: list[Connection]
) -> None:
    body, _ = fake_slack.mention("hello")
    for _ in range(2):  # one to each: the next push goes to the silent first one again
        await fake_slack.push(body)
    await fake_slack.wait_until(lambda: len(connected[1].envelopes) == 1)
    sent = await fake_slack.push_until_acked(body, ack_within=ACK_WITHIN_S)
    assert sent == 2  # the first (silent) connection, then the other
    first, retried = connected[0].envelopes[-1], connected[1].envelopes[-1]
    assert first["retry_attempt"] == 0 and retried["retry_attempt"] == 1
    assert retried["retry_reason"] == "timeout"
    assert retried["payload"]["event_id"] == body["event_id"]
