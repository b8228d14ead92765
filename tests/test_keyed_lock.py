"""bot.lanes.KeyedLock: one holder per key, in the order they asked; keys apart."""

from __future__ import annotations

import asyncio

from bot.lanes import KeyedLock


async def test_holders_of_one_key_take_turns_in_the_order_they_asked() -> None:
    keyed, order = KeyedLock(), []
    release = asyncio.Event()

    async def hold(name: str) -> None:
        async with keyed("a"):
            order.append(name)
            await release.wait()

    tasks = [asyncio.create_task(hold(name)) for name in ("first", "second", "third")]
    await asyncio.sleep(0.01)
    assert order == ["first"]
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first", "second", "third"]


async def test_another_key_does_not_wait_and_only_keys_in_use_are_kept() -> None:
    keyed = KeyedLock()
    release = asyncio.Event()

    async def hold() -> None:
        async with keyed("a"):
            await release.wait()

    held = asyncio.create_task(hold())
    await asyncio.sleep(0)
    async with asyncio.timeout(1):
        async with keyed("b"):
            assert len(keyed) == 2
    assert len(keyed) == 1
    release.set()
    await held
    assert len(keyed) == 0


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    keyed = KeyedLock()
    release = asyncio.Event()

    async def hold() -> None:
        async with keyed("a"):
            await release.wait()

    held, waiter = asyncio.create_task(hold()), asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    release.set()
    await held
    assert len(keyed) == 0
