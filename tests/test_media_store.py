"""Attachments kept beside their user turns, on every storage backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.types import Media
from tests.store_support import CONV, KINDS, OTHER, FakeClock, opened_store, user

pytestmark = pytest.mark.parametrize("kind", KINDS)

NOTES = Media("text", "notes.txt", text="the launch is on Tuesday", tokens=7)


def image(name: str, size: int) -> Media:
    return Media("image", name, data=bytes([len(name)]) * size, tokens=85)


async def test_media_come_back_by_turn_and_survive_a_restart(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    async with opened_store(kind, tmp_path, clock) as store:
        first = await store.add_user_turn(CONV, user("m1"))
        second = await store.add_user_turn(CONV, user("m2"))
        assert first is not None and second is not None
        await store.add_media(CONV, first, [NOTES, image("car.png", 100)], image_budget=1000)
        await store.add_media(OTHER, second, [NOTES], image_budget=1000)
        await store.close()
        await store.open()  # a restart (memory: the same object is the same database)
        found = await store.media_for(CONV, first, second)
    assert found == {first: [NOTES, image("car.png", 100)]}


async def test_the_oldest_images_go_past_the_budget(kind: str, tmp_path: Path) -> None:
    async with opened_store(kind, tmp_path, FakeClock()) as store:
        ids = [await store.add_user_turn(CONV, user(f"m{i}")) for i in range(3)]
        assert None not in ids
        turn = [i for i in ids if i is not None]
        await store.add_media(CONV, turn[0], [image("a.png", 400), NOTES], image_budget=1000)
        await store.add_media(CONV, turn[1], [image("bb.png", 400)], image_budget=1000)
        await store.add_media(CONV, turn[2], [image("ccc.png", 400)], image_budget=1000)
        found = await store.media_for(CONV, turn[0], turn[2])
    assert found == {
        turn[0]: [NOTES],
        turn[1]: [image("bb.png", 400)],
        turn[2]: [image("ccc.png", 400)],
    }


async def test_reset_forgets_the_media_too(kind: str, tmp_path: Path) -> None:
    async with opened_store(kind, tmp_path, FakeClock()) as store:
        turn = await store.add_user_turn(CONV, user("m1"))
        assert turn is not None
        await store.add_media(CONV, turn, [NOTES], image_budget=1000)
        await store.reset(CONV)
        assert await store.media_for(CONV, 0, 10**9) == {}


async def test_retention_deletes_old_media(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    async with opened_store(kind, tmp_path, clock, retention_days=1) as store:
        turn = await store.add_user_turn(CONV, user("m1"))
        assert turn is not None
        await store.add_media(CONV, turn, [NOTES], image_budget=1000)
        clock.now += 2 * 24 * 3600
        await store.prune_turns()
        assert await store.media_for(CONV, 0, 10**9) == {}


async def test_a_conversations_model_is_kept_apart_and_survives_reset_and_restart(
    kind: str, tmp_path: Path
) -> None:
    async with opened_store(kind, tmp_path, FakeClock()) as store:
        assert await store.get_model(CONV) is None
        await store.set_system_prompt(CONV, "be brief")
        await store.set_model(CONV, "o3-mini")
        await store.set_model(OTHER, "gpt-4o")
        await store.reset(CONV)
        await store.close()
        await store.open()
        assert await store.get_model(CONV) == "o3-mini"
        assert await store.get_system_prompt(CONV) == "be brief"  # the prompt stays too
        await store.set_model(CONV, None)
        assert await store.get_model(CONV) is None
        assert await store.get_model(OTHER) == "gpt-4o"


async def test_the_context_says_when_a_conversation_keeps_no_media(
    kind: str, tmp_path: Path
) -> None:
    async with opened_store(kind, tmp_path, FakeClock()) as store:
        turn = await store.add_user_turn(CONV, user("m1"))
        assert turn is not None
        before = await store.load_context(CONV, turn, 10)
        await store.add_media(CONV, turn, [NOTES], image_budget=1000)
        after = await store.load_context(CONV, turn, 10)
    assert after.may_have_media  # never "none" where there are some
    if kind == "postgres":  # it says so in the same round trip; media_for is then skipped
        assert not before.may_have_media
