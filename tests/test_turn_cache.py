"""The store's turn cache on its own: what it may answer and what it must refuse.

The SQLite store is checked against a model with a small cache in
tests/test_storage.py; these pin the edges that walk reaches only rarely.
"""

from __future__ import annotations

from bot.types import Turn
from storage.turn_cache import MAX_PENDING, TurnCache

END = 10**12


def turn(turn_id: int, role: str = "user", reply_to: int | None = None, **kw: bool) -> Turn:
    return Turn(role, f"t{turn_id}", 1, id=turn_id, reply_to=reply_to, **kw)  # type: ignore[arg-type]


def filled(cache: TurnCache, conv: str, ids: list[int]) -> None:
    """Fill as the store does: the newest rows first, each with its anchor."""
    cache.fill(conv, None, [(i, turn(i)) for i in reversed(ids)])


def ids(held: tuple[str | None, list[Turn]] | None) -> list[int] | None:
    return None if held is None else [t.id for t in held[1]]


def test_a_full_query_result_is_complete_and_answers_any_limit() -> None:
    cache = TurnCache(per_conversation=4)
    filled(cache, "c", [1, 2, 3])
    assert ids(cache.get("c", END, 10)) == [1, 2, 3]
    assert ids(cache.get("c", 2, 10)) == [1, 2]
    assert ids(cache.get("c", END, 2)) == [2, 3]


def test_a_capped_query_result_refuses_reads_that_need_older_turns() -> None:
    cache = TurnCache(per_conversation=3)
    filled(cache, "c", [4, 5, 6])  # as many as asked for: older ones may exist
    assert ids(cache.get("c", END, 3)) == [4, 5, 6]
    assert cache.get("c", END, 4) is None
    assert cache.get("c", 5, 3) is None


def test_trimming_the_oldest_turn_makes_the_entry_incomplete() -> None:
    cache = TurnCache(per_conversation=3)
    filled(cache, "c", [1, 2])
    cache.added("c", 3, turn(3))
    assert ids(cache.get("c", END, 5)) == [1, 2, 3]
    cache.added("c", 4, turn(4))  # 1 is dropped
    assert ids(cache.get("c", END, 3)) == [2, 3, 4]
    assert cache.get("c", END, 4) is None
    assert len(cache) == 3


def test_an_answer_to_a_turn_older_than_the_held_ones_is_not_held() -> None:
    cache = TurnCache(per_conversation=3)
    filled(cache, "c", [1, 2, 3])
    cache.added("c", 4, turn(4))  # 1 is dropped: turns before 2 are unknown now
    cache.added("c", 1, turn(9, "assistant", reply_to=1))  # sorts right after 1
    assert ids(cache.get("c", END, 3)) == [2, 3, 4]
    assert cache.get("c", END, 4) is None  # it would need 1 and 9


def test_answers_join_when_delivered_at_their_place() -> None:
    cache = TurnCache()
    filled(cache, "c", [1, 2])
    cache.added("c", 1, turn(3, "assistant", reply_to=1, delivered=False))
    assert ids(cache.get("c", END, 10)) == [1, 2]
    cache.delivered("c", 3)
    held = cache.get("c", END, 10)
    assert ids(held) == [1, 3, 2]
    assert held is not None and all(t.delivered for t in held[1])


def test_delivering_an_answer_it_never_saw_drops_the_conversation() -> None:
    cache = TurnCache()
    filled(cache, "c", [1, 2])
    cache.delivered("c", 7)  # stored before the entry was filled
    assert cache.get("c", END, 10) is None
    assert len(cache) == 0


def test_the_least_recently_used_conversations_go_first() -> None:
    cache = TurnCache(max_turns=5)
    filled(cache, "a", [1, 2])
    filled(cache, "b", [3, 4])
    assert cache.get("a", END, 5) is not None  # "a" is now the most recent
    filled(cache, "c", [5, 6])  # 6 turns held: "b" goes
    assert cache.get("b", END, 5) is None
    assert ids(cache.get("a", END, 5)) == [1, 2]
    assert ids(cache.get("c", END, 5)) == [5, 6]
    assert len(cache) == 4


def test_a_prompt_change_reaches_the_held_conversation() -> None:
    cache = TurnCache()
    cache.fill("c", "old", [(1, turn(1))])
    cache.set_prompt("c", "new")
    held = cache.get("c", END, 5)
    assert held is not None and held[0] == "new"


def test_forgetting_drops_the_conversation_and_a_later_prompt_adds_nothing() -> None:
    cache = TurnCache()
    cache.fill("c", "old", [(1, turn(1))])
    cache.forget("c")
    assert cache.get("c", END, 5) is None
    cache.set_prompt("c", "ignored")  # nothing held: nothing to change
    assert len(cache) == 0


def test_answers_never_delivered_are_let_go_oldest_first() -> None:
    cache = TurnCache()
    filled(cache, "c", [1])
    for answer_id in range(2, MAX_PENDING + 3):  # one more than it keeps, after 1
        cache.added("c", 1, turn(answer_id, "assistant", reply_to=1, delivered=False))
    cache.delivered("c", MAX_PENDING + 2)  # the newest is still known
    assert ids(cache.get("c", END, 5)) == [1, MAX_PENDING + 2]
    cache.delivered("c", 2)  # the oldest was let go: its place is unknown now
    assert cache.get("c", END, 5) is None


def long_turn(turn_id: int, chars: int) -> Turn:
    return Turn("user", f"{turn_id} " + "x" * chars, chars // 4, id=turn_id)


def test_long_turns_are_bounded_by_bytes_least_recently_used_first() -> None:
    cache = TurnCache(max_bytes=200_000)  # five 40,000-character turns, about
    for n, conv in enumerate("abcdefgh"):
        cache.fill(conv, None, [(n * 10 + i, long_turn(n * 10 + i, 40_000)) for i in (2, 1)])
        assert cache.get("a", END, 5) is not None  # read every time: used, so kept
        assert cache.bytes <= 200_000
    assert cache.get("h", END, 5) is not None  # the newest stays
    assert cache.get("b", END, 5) is None  # the oldest went
    cache.added("h", 99, long_turn(99, 40_000))
    assert cache.bytes <= 200_000
    assert ids(cache.get("h", END, 5)) == [71, 72, 99]


def test_a_conversation_larger_than_the_budget_is_answered_but_not_held() -> None:
    cache = TurnCache(max_bytes=100_000)
    cache.fill("small", None, [(1, turn(1))])
    held = cache.fill("big", None, [(i, long_turn(i, 40_000)) for i in (5, 4, 3)], END, 2)
    assert ids(held) == [4, 5]  # what the query returned still answers this read
    assert cache.get("big", END, 2) is None
    assert ids(cache.get("small", END, 5)) == [1]  # and nothing else was pushed out


def test_pending_answers_count_towards_the_budget() -> None:
    cache = TurnCache(max_bytes=150_000)
    filled(cache, "c", [1])
    before = cache.bytes
    cache.added("c", 1, Turn("assistant", "y" * 100_000, 1, id=2, reply_to=1, delivered=False))
    assert cache.bytes > before + 100_000
    cache.delivered("c", 2)
    assert ids(cache.get("c", END, 5)) == [1, 2]
    cache.added("c", 3, Turn("assistant", "z" * 100_000, 1, id=3, delivered=False))
    assert cache.get("c", END, 5) is None  # over budget: the conversation went
    assert cache.bytes == 0


def test_a_turn_added_twice_is_held_once() -> None:
    cache = TurnCache()
    filled(cache, "c", [1, 2])  # a fill read turn 2 while its write was finishing
    cache.added("c", 2, turn(2))
    assert ids(cache.get("c", END, 5)) == [1, 2]
    assert len(cache) == 2
