"""Hostile text through the text helpers: cleaning, command parsing and splitting.

Also home of the strategies the payload fuzzers share (hostile text, JSON-like
values, payload mutations), so every fuzz test draws from the same pool.
"""

from __future__ import annotations

import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st

from adapters.discord.sink import MAX_LEN as DISCORD_MAX_LEN
from adapters.slack.sink import slack_limits
from bot.sanitize import clean_text, parse_command
from bot.split import split_text
from tests.support import FUZZ, LONG_LINE, nasty_text

SLACK_MAX_LEN = slack_limits(streaming=True, native=False).max_len


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
