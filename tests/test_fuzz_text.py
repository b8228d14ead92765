"""Hostile text through the text helpers: cleaning, command parsing and splitting.

Also home of the strategies the payload fuzzers share (hostile text, JSON-like
values, payload mutations), so every fuzz test draws from the same pool.
"""

from __future__ import annotations

import copy
import os
import unicodedata
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.discord.sink import MAX_LEN as DISCORD_MAX_LEN
from adapters.slack.sink import slack_limits
from bot.sanitize import clean_text, parse_command
from bot.split import split_text

SLACK_MAX_LEN = slack_limits(streaming=True, native=False).max_len
# FUZZ_EXAMPLES=5000 runs a longer hunt; the default keeps the suite fast.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), deadline=None)
HUGE_REPEAT_MAX = 12_000  # times a piece may repeat
HUGE_MAX = 60_000  # characters; Slack caps a message at 40,000, Discord at 4,000
LONG_LINE = "y" * 2_500  # no space or newline: forces hard cuts at both limits

# Characters and fragments that break naive text code: fences, line ends, controls,
# bidi overrides, combining stacks, Korean (syllables and loose jamo), emoji with
# joiners and modifiers, flags, zero-width characters, lone surrogates, and both
# platforms' markup tokens.
NASTY_PIECES = (
    "```",
    "```python\n",
    "```\n",
    "~~~\n",
    "````\n",
    "`",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "\x00",
    "\x07\x1b[31m",
    "\x7f\x85",
    "\u2028\u2029",
    "\u202e",  # right-to-left override
    "\u2066\u2069",
    "مرحبا",
    "שלום",
    "e\u0301\u0302\u0303",
    "\u0301",
    "안녕하세요",
    "\u1100\u1161\u11a8",
    "\u11a8",
    "\U0001f469\u200d\U0001f4bb",
    "\U0001f44d\U0001f3fd",
    "\U0001f1f0\U0001f1f7",
    "\u2764\ufe0f",
    "\u200b\u200c\u200d\u2060\ufeff",
    "\ud83d",  # a lone high surrogate
    "\ude00",  # a lone low surrogate
    "\ud83d\ude00",  # a pair as two code units
    "<@1100000000000000001>",
    "<@!1300000000000000002>",
    "<@&1200000000000000031>",
    "<#1200000000000000011>",
    "<:party:1600000000000000001>",
    "</help:1700000000000000001>",
    "<@U0BOT>",
    "<@U0BOB|bob>",
    "<#C0RANDOM|random>",
    "<!here>",
    "<!subteam^S1>",
    "<https://example.com|x>",
    "<mailto:a@b.c|>",
    "&amp;&lt;&gt;",
    "<",
    ">",
    "|",
    "!reset",
    "word",
    LONG_LINE,
)


def _repeat(piece: str, times: int) -> str:
    return (piece * times)[:HUGE_MAX]


_times = st.integers(min_value=0, max_value=HUGE_REPEAT_MAX)
_any_code_point = st.characters(exclude_categories=())  # surrogates included
nasty_text = st.one_of(
    st.text(max_size=200),
    st.text(_any_code_point, max_size=200),
    st.lists(st.sampled_from(NASTY_PIECES) | st.text(_any_code_point, max_size=6), max_size=60).map(
        "".join
    ),
    st.builds(_repeat, st.sampled_from(NASTY_PIECES), _times),
    # Long runs of mixed pieces: every part boundary falls somewhere hostile.
    st.lists(st.builds(_repeat, st.sampled_from(NASTY_PIECES), _times), max_size=8).map(
        lambda runs: "".join(runs)[:HUGE_MAX]
    ),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# What a mutation puts in place of a value: the wrong type, or hostile text.
wrong_values = st.one_of(json_values, nasty_text)

Path = tuple[Any, ...]


def paths_of(value: Any, path: Path = ()) -> list[Path]:
    """Every place inside a nested dict/list payload, the root included."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_of(item, (*path, index))
    return found


def _at(root: Any, path: Path) -> Any:
    for step in path:
        root = root[step]
    return root


@st.composite
def mutated(draw: st.DrawFn, payload: Any, max_mutations: int = 4) -> Any:
    """``payload`` with a few random edits at random depth.

    Edits: drop a key or list item, replace a value by one of the wrong type
    (None, int, list, dict, huge or hostile strings), truncate a string, add an
    unknown key.
    """
    data = copy.deepcopy(payload)
    for _ in range(draw(st.integers(min_value=0, max_value=max_mutations))):
        path = draw(st.sampled_from(paths_of(data)))
        target = _at(data, path)
        edit = draw(st.sampled_from(("drop", "replace", "truncate", "add")))
        if edit == "add" and isinstance(target, dict):
            target[draw(st.text(max_size=8))] = draw(json_values)
        elif not path:
            continue  # the root itself stays a dict (the parsers' entry type)
        elif edit == "drop":
            del _at(data, path[:-1])[path[-1]]
        elif edit == "truncate" and isinstance(target, str):
            cut = draw(st.integers(min_value=0, max_value=len(target)))
            _at(data, path[:-1])[path[-1]] = target[:cut]
        else:
            _at(data, path[:-1])[path[-1]] = draw(wrong_values)
    return data


# -- the text helpers ---------------------------------------------------------------------------


def _assert_split(text: str, max_len: int) -> None:
    parts = split_text(text, max_len)
    assert "".join(p.body for p in parts) == text  # nothing lost, nothing reordered
    for part in parts:
        assert part.body
        assert len(part.render()) <= max_len
    assert bool(parts) == bool(text)


@FUZZ
@given(text=nasty_text)
@example(text="")
@example(text="```")
@example(text="\ud83d")
@example(text="x" * (DISCORD_MAX_LEN + 1))
@example(text="```python\n" + "a = 1\n" * 2_000)
@example(text="~~~\n" + LONG_LINE * 6)
@example(text="\ud83d\ude00" * DISCORD_MAX_LEN)
@example(text="e" + "\u0301" * 5_000)
def test_split_at_discord_limit_keeps_everything_and_fits(text: str) -> None:
    _assert_split(text, DISCORD_MAX_LEN)


@FUZZ
@given(text=nasty_text)
@example(text="x" * (SLACK_MAX_LEN + 1))
@example(text="```\n" + "\u200b" * (SLACK_MAX_LEN * 2))
@example(text="안녕" * SLACK_MAX_LEN)
def test_split_at_slack_limit_keeps_everything_and_fits(text: str) -> None:
    _assert_split(text, SLACK_MAX_LEN)


_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u202a\u202b\u202c\u202d\u202e")
_INVISIBLE |= frozenset("\u2066\u2067\u2068\u2069")


def _is_subsequence(short: str, long: str) -> bool:
    chars = iter(long)
    return all(ch in chars for ch in short)


@FUZZ
@given(text=nasty_text)
@example(text="!re\u200bset")
@example(text="\r\n \x00 \ud83d")
def test_clean_text_removes_only_invisible_and_control_characters(text: str) -> None:
    cleaned = clean_text(text)
    assert cleaned == cleaned.strip()
    assert clean_text(cleaned) == cleaned
    assert _is_subsequence(cleaned, text)
    for ch in cleaned:
        assert ch not in _INVISIBLE
        assert ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")


@FUZZ
@given(text=nasty_text, prefix=st.sampled_from(("!", "/", "?", "bot,", "\u200b")))
@example(text="!SYSTEM  be brief\n", prefix="!")
@example(text="!", prefix="!")
def test_parse_command_never_raises(text: str, prefix: str) -> None:
    command = parse_command(clean_text(prefix + text), prefix)
    if command is not None:
        assert command.name and command.name == command.name.lower()
        assert command.arg == command.arg.strip()


@FUZZ
@given(text=nasty_text)
def test_cleaned_text_splits_at_both_limits(text: str) -> None:
    cleaned = clean_text(text)
    _assert_split(cleaned, DISCORD_MAX_LEN)
    _assert_split(cleaned, SLACK_MAX_LEN)
