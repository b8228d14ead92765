"""Splitting long answers: nothing lost, every part fits, code fences survive."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.split import Part, fence_at, last_part, split_text, take_part
from tests.support import SPLIT_PIECES as PIECES

DISCORD_MAX = 2000


def _assert_invariants(text: str, parts: list[Part], max_len: int) -> None:
    assert "".join(p.body for p in parts) == text
    assert all(len(p.render()) <= max_len for p in parts)
    assert all(p.body for p in parts)
    assert (len(parts) == 0) == (text == "")


pieced_text = st.lists(st.sampled_from(PIECES), max_size=80).map("".join)


@given(text=st.text(max_size=600), max_len=st.integers(min_value=1, max_value=300))
def test_any_text_keeps_everything_and_fits(text: str, max_len: int) -> None:
    _assert_invariants(text, split_text(text, max_len), max_len)


@given(text=pieced_text, max_len=st.integers(min_value=1, max_value=400))
def test_markdown_like_text_keeps_everything_and_fits(text: str, max_len: int) -> None:
    _assert_invariants(text, split_text(text, max_len), max_len)


@given(
    text=pieced_text,
    max_len=st.integers(min_value=1, max_value=300),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_streaming_freezes_the_same_parts(text: str, max_len: int, seed: int) -> None:
    """Freezing parts of a growing text gives exactly the split of the whole text."""
    rng = random.Random(seed)
    parts: list[Part] = []
    start, fence, seen = 0, None, 0
    while seen < len(text):
        seen = min(len(text), seen + rng.randint(1, 50))
        while (taken := take_part(text[:seen], max_len, fence, start=start)) is not None:
            part, start, fence = taken
            parts.append(part)
    if start < len(text):
        parts.append(last_part(text, max_len, fence, start))
    assert parts == split_text(text, max_len)


WORDS = ["alpha", "beta", "gamma", "x = 1", "print(x)", "한국어", "def f():", "    return 2"]
FENCE_LINES = ["```python", "```", "~~~", "~~~~text", "````", "```js"]


@st.composite
def fenced_document(draw: st.DrawFn) -> str:
    """Short lines of words (so cuts fall on spaces or newlines) and fence lines."""
    lines = []
    for _ in range(draw(st.integers(min_value=0, max_value=60))):
        if draw(st.integers(min_value=0, max_value=4)) == 0:
            lines.append(draw(st.sampled_from(FENCE_LINES)))
        else:
            lines.append(" ".join(draw(st.lists(st.sampled_from(WORDS), max_size=3))))
        lines.append(draw(st.sampled_from(["\n", "\n", "\n\n"])))
    return "".join(lines)


@settings(max_examples=200)
@given(text=fenced_document(), max_len=st.integers(min_value=80, max_value=400))
def test_every_part_renders_with_balanced_fences(text: str, max_len: int) -> None:
    """Parsed on its own (as the platform does), no part but the last leaves a fence open."""
    parts = split_text(text, max_len)
    _assert_invariants(text, parts, max_len)
    for part in parts[:-1]:
        rendered = part.render() + "\n"
        assert fence_at(rendered, 0, len(rendered), None) is None, part


def test_short_text_is_one_part() -> None:
    assert split_text("hello", DISCORD_MAX) == [Part("", "hello", "")]


def test_empty_text_has_no_parts() -> None:
    assert split_text("", DISCORD_MAX) == []


def test_invalid_limit_is_rejected() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 0)


def test_prefers_paragraph_then_line_then_space() -> None:
    para = "a" * 60 + "\n\n" + "b" * 20 + "\n" + "c" * 10 + " " + "d" * 30
    assert split_text(para, 100)[0].body == "a" * 60 + "\n\n"
    line = "a" * 60 + "\n" + "b" * 20 + " " + "c" * 30
    assert split_text(line, 100)[0].body == "a" * 60 + "\n"
    space = "a" * 60 + " " + "b" * 20 + " " + "c" * 30
    assert split_text(space, 100)[0].body == "a" * 60 + " " + "b" * 20 + " "


def test_an_early_boundary_is_not_taken() -> None:
    """A paragraph break in the first half would make a tiny part: cut later instead."""
    text = "a" * 10 + "\n\n" + "b" * 300
    parts = split_text(text, 100)
    assert len(parts[0].body) > 50


def test_crlf_and_surrogate_pairs_stay_whole() -> None:
    text = ("ab\r\n" * 50) + ("\ud83d\ude00" * 100)
    for max_len in range(2, 40):
        parts = split_text(text, max_len)
        _assert_invariants(text, parts, max_len)
        for part in parts:
            assert not part.body.endswith("\r")
            assert not ("\ud800" <= part.body[-1] <= "\udbff")


def test_combining_marks_stay_with_their_letter() -> None:
    text = "e\u0301" * 200
    parts = split_text(text, 51)
    _assert_invariants(text, parts, 51)
    assert all(not p.body.startswith("\u0301") for p in parts)


def test_code_block_across_the_limit_is_closed_and_reopened() -> None:
    prose = "Here is the code you asked for.\n\n"
    code = "".join(f"    value_{i} = compute({i})  # step {i}\n" for i in range(80))
    text = prose + "```python\n" + code + "```\n\nThat is all.\n"
    parts = split_text(text, 1000)
    _assert_invariants(text, parts, 1000)
    assert len(parts) >= 3
    assert parts[0].body.endswith("\n") and parts[0].suffix == "```"  # no blank line
    assert parts[1].prefix == "```python\n"
    assert parts[0].render().endswith("```")
    assert parts[1].render().startswith("```python\n")
    assert parts[-1].render().endswith("That is all.\n")
    # The code copied out of the messages is the code, with no line added.
    shown = [_code_lines(part.render()) for part in parts]
    assert [line for lines in shown for line in lines] == code.splitlines()


def test_a_cut_inside_a_line_of_code_closes_the_fence_on_a_line_of_its_own() -> None:
    text = "```\n" + "x" * 300 + "\n```\n"
    parts = split_text(text, 120)
    assert parts[0].suffix == "\n```" and not parts[0].body.endswith("\n")


def _code_lines(rendered: str) -> list[str]:
    """The lines between a message's fences."""
    inside, lines = False, []
    for line in rendered.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines


def test_tilde_fence_is_reopened_with_its_marker() -> None:
    text = "~~~~text\n" + "line of text\n" * 30 + "~~~~\n"
    parts = split_text(text, 120)
    assert parts[0].suffix.endswith("~~~~")
    assert parts[1].prefix == "~~~~text\n"


def test_part_does_not_end_with_a_fence_that_just_opened() -> None:
    text = "a" * 70 + "\n```python\n" + "x = 1\n" * 40
    first = split_text(text, 100)[0]
    assert "```" not in first.body


def test_unbalanced_fence_at_the_end_is_left_as_written() -> None:
    text = "```python\nprint(1)\n"
    assert split_text(text, DISCORD_MAX) == [Part("", text, "")]


def test_huge_inputs_do_not_raise() -> None:
    samples = [
        "x" * 100_000,
        "word " * 20_000,
        "```\n" * 25_000,
        "\n" * 100_000,
        "가" * 100_000,
        "\u0301" * 100_000,
        "".join(random.Random(7).choice(PIECES) for _ in range(10_000)),
    ]
    for text in samples:
        _assert_invariants(text, split_text(text, DISCORD_MAX), DISCORD_MAX)


def test_tiny_limits_still_work() -> None:
    text = "```python\nprint('hi')\n```\n가나다"
    for max_len in range(1, 12):
        _assert_invariants(text, split_text(text, max_len), max_len)
