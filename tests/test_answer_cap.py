"""Every answer has a bound: at most ``limits.max_messages_per_answer`` platform
messages, and an output token limit in every request to the model.

The Discord test drives the real discord.py against the fake Discord and the real
openai SDK against the fake model, as tests/test_discord_e2e.py does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.discord.sink import MAX_LEN
from bench.common import FastSink, bench_config, bench_message
from bot.answer_cap import AnswerCap
from bot.app import running_core
from bot.core import Core
from bot.split import split_text
from bot.texts import Texts
from bot.types import ConversationKey
from fakes.fake_discord import FakeDiscord
from fakes.fake_openai import FakeOpenAI, reply
from tests.support import ALICE, GENERAL, answered, fake_discord, mention, settle
from tests.support import discord_texts as texts
from tests.support import running_discord as running

__all__ = ["fake_discord"]  # a fixture, used by name

CAP = 10
MEGABYTE_ANSWER = "".join(f"Sentence {n} of a very long answer. " for n in range(30_000))
NOTE = Texts("en").get("answer_capped", limit=CAP)


async def test_a_one_megabyte_answer_stops_after_ten_discord_messages_with_a_note(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, memory_core: Core
) -> None:
    assert len(MEGABYTE_ANSWER) > 1_000_000
    # 2,000 pieces, 5 ms apart: the whole answer would take 10 s to stream.
    fake_openai.script(reply(MEGABYTE_ANSWER, chunks=2000, chunk_interval_s=0.005))
    async with running(fake_discord, memory_core):
        await fake_discord.send_message(
            GENERAL,
            ALICE,
            mention(fake_discord, "tell me everything"),
            mentions=(fake_discord.bot,),
        )
        await answered(fake_discord, memory_core, GENERAL, CAP)
    posts = texts(fake_discord, GENERAL)
    assert CAP <= len(posts) <= CAP + 1  # ten messages of answer, the note in the last or after
    assert all(len(p) <= MAX_LEN for p in posts)
    assert posts[-1].endswith(NOTE)
    shown = "".join(posts)[: -len(NOTE)].rstrip("\n")
    assert MEGABYTE_ANSWER.startswith(shown) and len(shown) > (CAP - 1) * MAX_LEN // 2
    # The model was stopped: its stream never finished; the request had a token limit.
    assert fake_openai.completed == 0
    (request,) = fake_openai.chat_requests
    assert request["max_tokens"] == 500
    # What is stored is what was shown, so the next prompt carries no unseen text.
    conv = next(iter(memory_core.store._histories))  # type: ignore[attr-defined]
    stored = await memory_core.store.load_context(conv, 2**62, 10)
    assert [t.role for t in stored.turns] == ["user", "assistant"]
    assert stored.turns[1].content == shown


def test_the_cap_cuts_where_the_splitter_would_end_the_last_message() -> None:
    """Fed in pieces of any size, the cap keeps exactly the text of ``max_messages``
    parts as split_text cuts the whole answer."""
    text = "".join(f"Paragraph {n}.\n\n" + "word " * (n % 97) for n in range(400))
    parts = split_text(text, 300)
    assert len(parts) > 6
    expected = "".join(p.body for p in parts[:6])
    for size in (1, 7, 50, 301, 5000):
        cap = AnswerCap(300, 6)
        kept = "".join(cap.take(text[i : i + size]) for i in range(0, len(text), size))
        assert cap.full
        assert kept + cap.rest() == expected, size


def test_an_answer_that_fits_is_handed_on_whole() -> None:
    text = "".join(f"Paragraph {n}.\n\n" + "word " * (n % 97) for n in range(21))
    assert len(split_text(text, 300)) == 6  # exactly as many as allowed
    for size in (1, 7, 50, 301, 5000):
        cap = AnswerCap(300, 6)
        kept = "".join(cap.take(text[i : i + size]) for i in range(0, len(text), size))
        assert not cap.full
        assert kept + cap.rest() == text, size


@pytest.mark.parametrize("max_output_tokens", [None, 77])
async def test_the_bot_as_built_always_sends_an_output_token_limit(
    fake_openai: FakeOpenAI, tmp_path: Path, max_output_tokens: int | None
) -> None:
    """The core ``bot.app.running_core`` builds from the configuration (the default,
    or a set value) puts the limit in the request body."""
    cfg = bench_config(fake_openai.base_url + "/v1", tmp_path / "bot.db")
    if max_output_tokens is not None:
        from dataclasses import replace

        cfg = replace(cfg, openai=replace(cfg.openai, max_output_tokens=max_output_tokens))
    async with running_core(cfg) as core:
        key = ConversationKey("console", "w1", "c1")
        sink = FastSink(key.channel)
        await core.handle(bench_message(key, "m1", "hello"), sink)
        await settle(core)
    (request,) = fake_openai.chat_requests
    assert request["max_tokens"] == (max_output_tokens or 1024)
