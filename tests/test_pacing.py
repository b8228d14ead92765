"""Per-channel token buckets, driven by a virtual clock (no real waiting)."""

from __future__ import annotations

import asyncio

import pytest

from bot.pacing import PRUNE_INTERVAL_S, Pacer
from tests.support import VirtualTime, assert_within_bucket


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def pacer(vt: VirtualTime) -> Pacer:
    return Pacer(clock=vt.clock, sleep=vt.sleep)


async def test_burst_then_steady_rate(vt: VirtualTime, pacer: Pacer) -> None:
    granted: list[float] = []

    async def writes() -> None:
        for _ in range(7):
            await pacer.acquire("chan", 3, 2.0)
            granted.append(vt.now)

    await vt.run(writes())
    assert granted == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0]


async def test_waiters_on_one_key_are_served_in_order(vt: VirtualTime, pacer: Pacer) -> None:
    order: list[int] = []

    async def writer(n: int) -> None:
        await pacer.acquire("chan", 1, 1.0)
        order.append(n)

    async def all_writers() -> None:
        await asyncio.gather(*(writer(n) for n in range(6)))

    await vt.run(all_writers())
    assert order == list(range(6))
    assert vt.now == 5.0


async def test_keys_do_not_wait_for_each_other(vt: VirtualTime, pacer: Pacer) -> None:
    granted: dict[str, list[float]] = {}

    async def channel(key: str) -> None:
        for _ in range(4):
            await pacer.acquire(key, 1, 1.0)
            granted.setdefault(key, []).append(vt.now)

    async def channels() -> None:
        await asyncio.gather(*(channel(f"c{i}") for i in range(20)))

    await vt.run(channels())
    for times in granted.values():
        assert times == [0.0, 1.0, 2.0, 3.0]


async def test_bucket_refills_after_a_pause(vt: VirtualTime, pacer: Pacer) -> None:
    async def scenario() -> list[float]:
        for _ in range(2):
            await pacer.acquire("chan", 2, 1.0)
        await vt.sleep(10.0)
        out = []
        for _ in range(3):
            await pacer.acquire("chan", 2, 1.0)
            out.append(vt.now)
        return out

    assert await vt.run(scenario()) == [10.0, 10.0, 11.0]


async def test_cancelled_waiter_gives_its_slot_back(vt: VirtualTime, pacer: Pacer) -> None:
    async def scenario() -> float:
        await pacer.acquire("chan", 1, 1.0)
        waiter = asyncio.ensure_future(pacer.acquire("chan", 1, 1.0))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await pacer.acquire("chan", 1, 1.0)
        return vt.now

    assert await vt.run(scenario()) == 1.0


async def test_idle_keys_are_dropped(vt: VirtualTime, pacer: Pacer) -> None:
    async def scenario() -> None:
        for i in range(1000):
            await pacer.acquire(f"chan-{i}", 5, 1.0)
        assert len(pacer) <= 1000
        await vt.sleep(PRUNE_INTERVAL_S + 10)
        await pacer.acquire("busy", 5, 1.0)

    await vt.run(scenario())
    assert len(pacer) == 1


async def test_a_busy_key_is_kept(vt: VirtualTime, pacer: Pacer) -> None:
    async def scenario() -> None:
        for _ in range(3):
            await pacer.acquire("busy", 1, 0.001)  # empties the bucket for a long time
        await vt.sleep(PRUNE_INTERVAL_S + 1)
        await pacer.acquire("other", 1, 1.0)

    await vt.run(scenario())
    assert len(pacer) == 2


async def test_rejects_a_zero_rate(pacer: Pacer) -> None:
    with pytest.raises(ValueError):
        await pacer.acquire("chan", 1, 0.0)


def test_bucket_check_catches_a_burst() -> None:
    """The helper used by the delivery tests does fail on too many writes."""
    with pytest.raises(AssertionError):
        assert_within_bucket([0.0, 0.1, 0.2], burst=2, rate=1.0)
    assert_within_bucket([0.0, 0.0, 1.0], burst=2, rate=1.0)


# -- optional writes, blocks (429s), refunds -------------------------------------------


async def test_optional_writes_never_go_before_a_waiting_essential_one(
    vt: VirtualTime, pacer: Pacer
) -> None:
    granted: list[tuple[str, float]] = []

    async def optional(n: int) -> None:
        await pacer.acquire_optional("ws", 1, 1.0)
        granted.append((f"optional {n}", vt.now))

    async def essential() -> None:
        await asyncio.sleep(0)  # arrives after the optional writers are already waiting
        await pacer.acquire("ws", 1, 1.0)
        granted.append(("essential", vt.now))

    async def scenario() -> None:
        await pacer.acquire("ws", 1, 1.0)  # the bucket is empty from here
        await asyncio.gather(optional(1), optional(2), essential())

    await vt.run(scenario())
    assert granted == [("essential", 1.0), ("optional 1", 2.0), ("optional 2", 3.0)]


async def test_a_cancelled_optional_wait_holds_nothing(vt: VirtualTime, pacer: Pacer) -> None:
    async def scenario() -> float:
        await pacer.acquire("ws", 1, 1.0)
        waiter = asyncio.ensure_future(pacer.acquire_optional("ws", 1, 1.0))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await pacer.acquire("ws", 1, 1.0)
        return vt.now

    assert await vt.run(scenario()) == 1.0


async def test_a_block_moves_every_waiter_back_and_empties_the_bucket(
    vt: VirtualTime, pacer: Pacer
) -> None:
    granted: list[float] = []

    async def writer() -> None:
        await pacer.acquire("ws", 2, 1.0)
        granted.append(vt.now)

    async def scenario() -> None:
        await pacer.acquire("ws", 2, 1.0)
        await pacer.acquire("ws", 2, 1.0)  # burst spent
        waiting = asyncio.ensure_future(writer())  # reserved for t=1
        await asyncio.sleep(0)
        pacer.block("ws", 2, 1.0, 5.0)  # a 429 with Retry-After 5
        pacer.block("ws", 2, 1.0, 3.0)  # a second 429 inside the first block: no more
        await asyncio.gather(waiting, writer(), writer())

    await vt.run(scenario())
    # The waiter moves back by the block; newcomers queue after it, one per second,
    # from an empty bucket (no burst right after a 429).
    assert granted == [6.0, 7.0, 8.0]


async def test_optional_writes_wait_out_a_block(vt: VirtualTime, pacer: Pacer) -> None:
    async def scenario() -> float:
        pacer.block("ws", 5, 1.0, 4.0)
        await pacer.acquire_optional("ws", 5, 1.0)
        return vt.now

    assert await vt.run(scenario()) == 5.0


async def test_a_taken_token_still_waits_out_a_later_block(vt: VirtualTime, pacer: Pacer) -> None:
    async def scenario() -> float:
        await pacer.acquire("ws", 5, 1.0)  # taken before the 429
        pacer.block("ws", 5, 1.0, 2.0)
        await pacer.wait_unblocked("ws")
        return vt.now

    assert await vt.run(scenario()) == 2.0


async def test_a_refunded_token_is_used_again(vt: VirtualTime, pacer: Pacer) -> None:
    async def scenario() -> float:
        await pacer.acquire("ws", 1, 1.0)
        pacer.refund("ws", 1, 1.0)  # that write was not made
        await pacer.acquire("ws", 1, 1.0)
        return vt.now

    assert await vt.run(scenario()) == 0.0
