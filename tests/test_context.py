"""Prompt building: trim by tokens, keep the newest message, label speakers in groups."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.context import REPLY_PRIMING_TOKENS, ContextStats, build_messages
from bot.history_memo import MEMO_BYTES, MEMO_LABELS, MEMO_SYSTEM_PROMPTS, HistoryMemo
from bot.prompt_parts import GROUP_SYSTEM_LINE, MESSAGE_OVERHEAD_TOKENS
from bot.tokens import TokenCounter, token_counter_for
from bot.types import ChatMessage, Role, Turn

NOTE = "[message shortened: {removed} tokens removed]"
NOTE_PATTERN = re.compile(r"\[message shortened: (\d+) tokens removed\]$")
SYSTEM = "You are a helpful assistant."
MEMO_PROMPTS = (SYSTEM, "", "   ", "Answer in French.", "x " * 3000)  # the last one must shrink
COUNTER = token_counter_for("gpt-4o")


def turn(
    role: Role, content: str, name: str | None = None, counter: TokenCounter = COUNTER
) -> Turn:
    return Turn(role=role, content=content, tokens=counter.count(content), author_name=name)


def real_size(messages: list[ChatMessage], counter: TokenCounter = COUNTER) -> int:
    """The prompt size recounted from scratch, independent of the function's own bookkeeping."""
    return REPLY_PRIMING_TOKENS + sum(
        counter.count(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages
    )


def build(
    turns: list[Turn], budget: int, *, group: bool = False, system: str = SYSTEM
) -> tuple[list[ChatMessage], ContextStats]:
    return build_messages(system, turns, budget, COUNTER, group=group, shortened_note=NOTE)


def conversation(n: int, words: int = 40) -> list[Turn]:
    """Alternating user/assistant turns, each about ``words`` tokens, ending with a user turn."""
    roles: list[Role] = ["user", "assistant"]
    out = [turn(roles[i % 2], f"message {i}: " + "word " * words) for i in range(n - 1)]
    if out and out[-1].role == "user":
        out.append(turn("assistant", "ok"))
    return [*out, turn("user", "the newest question")]


def test_everything_fits_untouched() -> None:
    turns = conversation(5)
    messages, stats = build(turns, 10_000)
    assert messages[0] == {"role": "system", "content": SYSTEM}
    assert [m["content"] for m in messages[1:]] == [t.content for t in turns]
    assert [m["role"] for m in messages[1:]] == [t.role for t in turns]
    assert stats.dropped_turns == 0
    assert not stats.shortened
    assert stats.prompt_tokens == real_size(messages)


def test_ten_short_messages_all_kept_when_they_fit() -> None:
    turns = [turn("user", f"short {i}") for i in range(10)]
    exact_fit = [{"role": "system", "content": SYSTEM}]
    exact_fit += [{"role": "user", "content": t.content} for t in turns]
    budget = real_size(exact_fit)  # fits by tokens: nothing may be dropped
    messages, stats = build(turns, budget)
    assert len(messages) == 11
    assert stats.dropped_turns == 0
    assert stats.prompt_tokens <= budget


def test_oldest_turns_dropped_first() -> None:
    turns = conversation(12)
    full, _ = build(turns, 100_000)
    budget = real_size(full) - 150  # about three older turns too many
    messages, stats = build(turns, budget)
    assert stats.dropped_turns >= 3
    kept = [m["content"] for m in messages[1:]]
    assert kept == [t.content for t in turns[len(turns) - len(kept) :]]  # a suffix, in order
    assert messages[1]["role"] == "user"  # the cut never leaves an answer without its question
    assert stats.prompt_tokens <= budget
    assert real_size(messages) <= budget


def test_history_counts_are_taken_from_the_stored_turns() -> None:
    # A stored count is trusted, not recounted: a turn stored as huge is dropped.
    stored_huge = Turn(role="user", content="tiny", tokens=5_000)
    messages, stats = build([stored_huge, turn("assistant", "hi"), turn("user", "hello")], 1_000)
    assert [m["content"] for m in messages[1:]] == ["hello"]
    assert stats.dropped_turns == 2  # the huge one, then the answer orphaned by the cut


def test_newest_is_kept_when_history_is_huge() -> None:
    turns = [turn("user", "old " * 3_000), turn("assistant", "answer " * 3_000)]
    turns.append(turn("user", "what now?"))
    messages, stats = build(turns, 200)
    assert messages[-1] == {"role": "user", "content": "what now?"}
    assert stats.dropped_turns == 2
    assert real_size(messages) <= 200


def test_huge_newest_message_is_shortened_with_note() -> None:
    huge = "All work and no play makes Jack a dull boy. " * 2_000
    turns = [turn("user", "earlier"), turn("assistant", "sure"), turn("user", huge)]
    messages, stats = build(turns, 500)
    last = messages[-1]
    assert last["role"] == "user"
    match = NOTE_PATTERN.search(last["content"])
    assert match is not None
    kept_text = last["content"][: match.start()].rstrip("\n")
    assert huge.startswith(kept_text) and len(kept_text) > 100
    assert int(match.group(1)) == turns[-1].tokens - COUNTER.count(kept_text)
    assert stats.shortened
    assert stats.dropped_turns == 2
    assert messages[0]["content"] == SYSTEM
    assert stats.prompt_tokens <= 500
    assert real_size(messages) <= 500
    assert real_size(messages) >= 480  # the room is used, not wasted


def test_system_prompt_larger_than_budget_is_shortened_too() -> None:
    system = "Rule: be kind and precise. " * 400
    messages, stats = build([turn("user", "question " * 400)], 300, system=system)
    assert system.startswith(messages[0]["content"])
    assert messages[-1]["content"].startswith("question question")
    assert NOTE_PATTERN.search(messages[-1]["content"])
    assert stats.shortened
    assert real_size(messages) <= 300


def test_short_newest_survives_a_huge_system_prompt_whole() -> None:
    messages, stats = build([turn("user", "hi")], 100, system="S " * 5_000)
    assert messages[-1] == {"role": "user", "content": "hi"}
    assert stats.shortened
    assert real_size(messages) <= 100


def test_group_prefixes_speaker_names() -> None:
    turns = [
        turn("user", "I like tea", "Alice"),
        turn("assistant", "Tea is nice."),
        turn("user", "I prefer coffee", "Bob\nthe\tbuilder"),
    ]
    messages, stats = build(turns, 10_000, group=True)
    assert messages[0]["content"] == f"{SYSTEM}\n\n{GROUP_SYSTEM_LINE}"
    assert messages[1] == {"role": "user", "content": "Alice: I like tea"}
    assert messages[2] == {"role": "assistant", "content": "Tea is nice."}
    assert messages[3] == {"role": "user", "content": "Bob the builder: I prefer coffee"}
    assert stats.prompt_tokens >= real_size(messages)


def test_group_prefix_tokens_are_accounted_for() -> None:
    turns = [turn("user", "x", "A" * 40) for _ in range(20)]
    _, plain_stats = build(turns, 10_000)
    _, grouped_stats = build(turns, 10_000, group=True)
    prefix_tokens = COUNTER.count("A" * 40 + ": ")
    line_tokens = COUNTER.count(f"{SYSTEM}\n\n{GROUP_SYSTEM_LINE}") - COUNTER.count(SYSTEM)
    expected = plain_stats.prompt_tokens + 20 * prefix_tokens + line_tokens
    assert grouped_stats.prompt_tokens == expected
    # A budget that fits the plain prompt exactly cannot fit every prefixed message.
    _, tight = build(turns, plain_stats.prompt_tokens, group=True)
    assert tight.dropped_turns > 0


def test_one_on_one_conversation_has_no_prefixes() -> None:
    messages, _ = build([turn("user", "hello", "Alice")], 1_000)
    assert messages[-1]["content"] == "hello"
    assert GROUP_SYSTEM_LINE not in messages[0]["content"]


def test_empty_system_prompt_sends_no_system_message() -> None:
    messages, _ = build([turn("user", "hello")], 1_000, system="")
    assert messages == [{"role": "user", "content": "hello"}]


def test_empty_older_turns_are_skipped() -> None:
    messages, stats = build([turn("assistant", ""), turn("user", "hi")], 1_000)
    assert [m["content"] for m in messages] == [SYSTEM, "hi"]
    assert stats.dropped_turns == 0


def test_no_turns_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        build([], 1_000)


def test_estimate_counter_is_respected(tmp_path: Path) -> None:
    estimating = TokenCounter("o200k_base", directory=tmp_path)  # no vocabulary: estimates
    turns = [turn("user", "long text " * 500, counter=estimating)]
    messages, stats = build_messages(
        SYSTEM, turns, 200, estimating, group=False, shortened_note=NOTE
    )
    assert stats.shortened
    assert real_size(messages, estimating) <= 200


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC _-", min_size=1, max_size=16)
TURNS = st.lists(
    st.tuples(st.sampled_from(["user", "assistant"]), st.text(max_size=400), NAMES),
    max_size=12,
)
MIN_BUDGET = 100  # priming + overhead + prefix + note + a head of the newest message


@settings(max_examples=200, deadline=None)
@given(
    history=TURNS,
    newest=st.text(max_size=3_000),
    newest_name=NAMES,
    system=st.text(max_size=800),
    budget=st.integers(min_value=MIN_BUDGET, max_value=2_000),
    group=st.booleans(),
)
def test_result_always_fits_and_ends_with_newest(
    history: list[tuple[Role, str, str]],
    newest: str,
    newest_name: str,
    system: str,
    budget: int,
    group: bool,
) -> None:
    turns = [turn(role, text, name) for role, text, name in history]
    turns.append(turn("user", newest, newest_name))
    messages, stats = build(turns, budget, group=group, system=system)

    assert stats.prompt_tokens <= budget
    assert real_size(messages) <= budget
    last = messages[-1]
    assert last["role"] == "user"
    body = last["content"]
    if group and newest_name.strip():
        prefix = " ".join(newest_name.split()) + ": "
        assert body.startswith(prefix)
        body = body[len(prefix) :]
    if body != newest:
        assert stats.shortened
        note = NOTE_PATTERN.search(body)
        head = body[: note.start()].removesuffix("\n\n") if note else body
        assert newest.startswith(head)
        assert head  # something of the newest message always survives
    roles = [m["role"] for m in messages]
    assert roles.count("system") <= 1 and (roles[0] == "system" or "system" not in roles)
    assert len(messages) - ("system" in roles) - 1 + stats.dropped_turns <= len(history)


@settings(max_examples=60, deadline=None)
@given(
    history=TURNS,
    budgets=st.lists(st.integers(min_value=MIN_BUDGET, max_value=2_000), min_size=1, max_size=4),
    groups=st.lists(st.booleans(), min_size=1, max_size=4),
    prompts=st.lists(st.sampled_from(MEMO_PROMPTS), min_size=1, max_size=4),
)
def test_a_memo_changes_nothing_across_calls_and_modes(
    history: list[tuple[Role, str, str]], budgets: list[int], groups: list[bool], prompts: list[str]
) -> None:
    """The memo hands back what building from scratch gives, call after call, in both
    modes (it keys by turn id; the group flag adds labels), for changing system
    prompts, and even when it fills up."""
    turns = [
        replace(turn(role, text, name), id=i + 1) for i, (role, text, name) in enumerate(history)
    ]
    turns.append(replace(turn("user", "the newest question", "Ann"), id=len(turns) + 1))
    roomy = HistoryMemo()
    small = HistoryMemo(size=max(1, len(turns) // 2))  # it starts over now and then
    tight = HistoryMemo(max_bytes=2_000)  # so does this one, by bytes
    calls = zip(budgets * 2, groups * 2, prompts * 2, strict=False)
    for budget, group, prompt in calls:
        fresh = build_messages(prompt, turns, budget, COUNTER, group=group, shortened_note=NOTE)
        for memo in (roomy, small, tight):
            memoed = build_messages(
                prompt, turns, budget, COUNTER, group=group, shortened_note=NOTE, memo=memo
            )
            assert memoed == fresh


def test_a_memo_stays_bounded() -> None:
    """Full, it starts over before the next call: at most its size plus one call's turns."""
    memo = HistoryMemo(size=4)
    for start in range(0, 300, 10):
        turns = [replace(t, id=start + i + 1) for i, t in enumerate(conversation(10))]
        group = start % 20 == 0
        build_messages(SYSTEM, turns, 10_000, COUNTER, group=group, shortened_note=NOTE, memo=memo)
        assert len(memo) < 4 + 10


def test_a_memo_keeps_conversations_bounded() -> None:
    """Conversations' histories too: at most its size plus one call's turns in all."""
    memo = HistoryMemo(size=25)
    for start in range(0, 300, 10):
        turns = [replace(t, id=start + i + 1) for i, t in enumerate(conversation(10))]
        key = f"conversation {start}"
        build_messages(
            SYSTEM, turns, 10_000, COUNTER, group=False, shortened_note=NOTE, memo=memo, key=key
        )
        held = sum(len(run.ids) for run in memo._runs.values())
        assert held <= 25 + 10


def test_a_memo_stays_within_its_byte_budget_with_long_messages() -> None:
    """Long messages fill the byte budget long before the count: 8 conversations of
    40,000-character turns stay within it, a turn larger than the budget is not
    kept at all, and every build still equals one from scratch."""
    budget_bytes = 1_000_000
    memo = HistoryMemo(max_bytes=budget_bytes)
    histories: dict[str, list[Turn]] = {f"c{i}": [] for i in range(8)}
    ids = itertools.count(1)
    for n in range(120):
        key = f"c{n % 8}"
        size = 600_000 if n == 50 else 40_000  # one larger than half the budget
        text = f"{n} " + "x" * size
        said = Turn("user", text, size // 4, author_name=f"P{n % 3}", id=next(ids))
        asked = replace(turn("user", f"question {n}", "Ann"), id=next(ids))
        turns = [*histories[key][-30:], said, asked]
        fresh = build_messages(SYSTEM, turns, 16_000, COUNTER, group=True, shortened_note=NOTE)
        memoed = build_messages(
            SYSTEM, turns, 16_000, COUNTER, group=True, shortened_note=NOTE, memo=memo, key=key
        )
        assert memoed == fresh
        assert memo.bytes <= budget_bytes, (n, memo.bytes)
        histories[key] += [said, asked]
    assert memo.bytes > 0  # it did keep what fits


def test_a_memo_keeps_labels_and_system_prompts_bounded() -> None:
    """Speakers and system prompts seen once each, far more than the memo keeps."""
    memo = HistoryMemo()
    for n in range(MEMO_LABELS + 50):
        newest = replace(turn("user", "hi", f"speaker {n}"), id=n + 1)
        prompt = f"prompt {n}"
        messages, _ = build_messages(
            prompt, [newest], 10_000, COUNTER, group=True, shortened_note=NOTE, memo=memo
        )
        assert messages[-1]["content"] == f"speaker {n}: hi"  # a new label, not a stale one
        assert messages[0]["content"].startswith(prompt)
        assert len(memo.labels()) <= MEMO_LABELS
        assert len(memo._systems) <= MEMO_SYSTEM_PROMPTS


# One step in the life of a conversation, as the store would show it to the core.
WORDS = st.sampled_from([0, 2, 8, 20, 40])  # 0: a blank turn; the others cut at some budgets
HISTORY_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("say"), st.sampled_from(["user", "assistant"]), WORDS),
        st.tuples(st.just("late"), st.just("assistant"), WORDS),
        st.tuples(st.just("deliver"), st.just(""), st.just(0)),
        st.tuples(st.just("reset"), st.just(""), st.just(0)),
        st.tuples(st.just("unstored"), st.just("user"), WORDS),
    ),
    min_size=4,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    steps=HISTORY_STEPS,
    window=st.integers(min_value=1, max_value=12),
    budgets=st.lists(st.integers(min_value=MIN_BUDGET, max_value=600), min_size=1, max_size=5),
    groups=st.lists(st.booleans(), min_size=1, max_size=3),
    memo_size=st.sampled_from([3, 10, 10_000]),
    memo_bytes=st.sampled_from([1, 2_000, 6_000, MEMO_BYTES]),
)
def test_a_conversations_history_from_the_memo_is_what_a_fresh_build_gives(
    steps: list[tuple[str, str, int]],
    window: int,
    budgets: list[int],
    groups: list[bool],
    memo_size: int,
    memo_bytes: int,
) -> None:
    """Two conversations share a memo while their histories grow, slide past the
    window, gain answers delivered late (in the middle), are reset (new ids) and get
    turns without ids; every build with the memo and the conversation's key equals
    one from scratch, whether the budget cuts the history or not, and whether its
    byte budget holds everything, starts it over now and then, or holds nothing."""
    memo = HistoryMemo(size=memo_size, max_bytes=memo_bytes)
    ids = iter(range(1, 10_000))
    shown: dict[str, list[Turn]] = {"a": [], "b": []}  # by id, as the store orders them
    late: dict[str, list[Turn]] = {"a": [], "b": []}  # stored, not delivered yet
    for n, (op, role, words) in enumerate(steps):
        key = "ab"[n % 2]
        text = f"w{n} " * words
        if op == "say":
            said = turn("user" if role == "user" else "assistant", text, f"name{n % 3}")
            shown[key].append(replace(said, id=next(ids)))
        elif op == "late":
            late[key].append(replace(turn("assistant", text), id=next(ids)))
        elif op == "deliver" and late[key]:
            shown[key] = sorted([*shown[key], late[key].pop(0)], key=lambda t: t.id)
        elif op == "reset":
            shown[key], late[key] = [], []
        elif op == "unstored":  # no id: never what a store returns, but allowed
            shown[key].append(turn("user", text, "Bob"))
        asked = replace(turn("user", f"question {n}", "Ann"), id=next(ids))
        turns = [*shown[key][-(window - 1) :], asked] if window > 1 else [asked]
        budget, group = budgets[n % len(budgets)], groups[n % len(groups)]
        fresh = build_messages(SYSTEM, turns, budget, COUNTER, group=group, shortened_note=NOTE)
        memoed = build_messages(
            SYSTEM, turns, budget, COUNTER, group=group, shortened_note=NOTE, memo=memo, key=key
        )
        assert memoed == fresh
        shown[key].append(asked)  # answered: the question is history now


def test_a_memo_cuts_every_small_history_where_a_walk_from_scratch_does() -> None:
    """Every history of up to four turns from big/small/blank questions and answers,
    at budgets around each cut (every budget for up to three turns, so some fit
    exactly), then with its oldest turn gone: the memo's binary search keeps what the
    walk keeps, drops the same answers that would lead, and counts the same cost."""
    pieces: list[tuple[Role, str]] = [
        ("user", "w " * 40),
        ("user", "w " * 3),
        ("user", ""),
        ("assistant", "w " * 40),
        ("assistant", "w " * 3),
        ("assistant", " "),
    ]
    next_id = itertools.count(1)
    for size in range(5):
        budgets = range(30, 141) if size <= 3 else (40, 60, 75, 90, 130, 200)
        for shape in itertools.product(pieces, repeat=size):
            history = [replace(turn(role, text, "Ann"), id=next(next_id)) for role, text in shape]
            newest = replace(turn("user", "newest", "Bo"), id=next(next_id))
            memo = HistoryMemo()
            for budget in budgets:
                for turns in ([*history, newest], [*history[1:], newest]):  # then one slid off
                    fresh = build_messages(
                        "", turns, budget, COUNTER, group=False, shortened_note=NOTE
                    )
                    memoed = build_messages(
                        "",
                        turns,
                        budget,
                        COUNTER,
                        group=False,
                        shortened_note=NOTE,
                        memo=memo,
                        key="k",
                    )
                    assert memoed == fresh, (shape, budget, len(turns))
