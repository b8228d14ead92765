"""bot.lanes.KeyedLock: one holder per key, in the order they asked; keys apart."""

from __future__ import annotations

import asyncio

from bot.lanes import KeyedLock


async def hold(keyed: KeyedLock, release: asyncio.Event, order: list[str], name: str) -> None:
    """Hold key "a" until ``release``; ``name`` goes into ``order`` once it holds it."""
    async with keyed("a"):
        order.append(name)
        await release.wait()


async def test_holders_of_one_key_take_turns_in_the_order_they_asked() -> None:
    keyed, release, order = KeyedLock(), asyncio.Event(), list[str]()
    names = ("first", "second", "third")
    tasks = [asyncio.create_task(hold(keyed, release, order, name)) for name in names]
    await asyncio.sleep(0.01)
    assert order == ["first"]
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first", "second", "third"]


async def test_another_key_does_not_wait_and_only_keys_in_use_are_kept() -> None:
    keyed, release = KeyedLock(), asyncio.Event()
    held = asyncio.create_task(hold(keyed, release, [], "held"))
    await asyncio.sleep(0)
    async with asyncio.timeout(1):
        async with keyed("b"):
            assert len(keyed) == 2
    assert len(keyed) == 1
    release.set()
    await held
    assert len(keyed) == 0


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    keyed, release, order = KeyedLock(), asyncio.Event(), list[str]()
    held = asyncio.create_task(hold(keyed, release, order, "held"))
    waiter = asyncio.create_task(hold(keyed, release, order, "waiter"))
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    release.set()
    await held
    assert order == ["held"]
    assert len(keyed) == 0
