"""/usage and /forget on Discord: real discord.py against the fake Discord and the
fake OpenAI, the ledger in a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from bot.accounting import accounting_for
from bot.config import QuotasConfig, UsageConfig
from bot.core import Core
from bot.texts import Texts
from bot.tokens import token_counter_for
from fakes.fake_discord import FakeDiscord
from fakes.fake_openai import FakeOpenAI, reply
from tests.store_support import FakeClock, opened_store
from tests.support import ALICE, GENERAL, GUILD, answered, fake_discord, make_core, mention
from tests.support import DISCORD_WAIT_S as WAIT_S
from tests.support import running_discord as running

__all__ = ["fake_discord"]  # the fixture, used by name


@pytest.fixture
async def core(openai_client: openai.AsyncOpenAI, tmp_path: Path) -> AsyncIterator[Core]:
    async with opened_store("sqlite", tmp_path, FakeClock()) as store:
        counter = token_counter_for("gpt-4o-mini")
        accounting = accounting_for(
            store,
            usage=UsageConfig(),
            quotas=QuotasConfig(),
            texts=Texts("en"),
            counter=counter,
            model_name="gpt-4o-mini",
        )
        made = make_core(openai_client, store, accounting=accounting)
        yield made
        await made.close(1.0)


async def test_slash_usage_and_forget_answer_privately(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core: Core
) -> None:
    fake_openai.script(reply("Hello!", usage=(1500, 500)))
    async with running(fake_discord, core):
        await fake_discord.send_message(
            GENERAL, ALICE, mention(fake_discord, "hi"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, core, GENERAL)
        usage = await fake_discord.send_interaction(GENERAL, ALICE, "usage")
        forget = await fake_discord.send_interaction(GENERAL, ALICE, "forget", {"who": "me"})
        await fake_discord.wait_until(
            lambda: len(fake_discord.calls_to("PATCH", r"/webhooks/.*@original")) >= 2, WAIT_S
        )
    callbacks = fake_discord.calls_to("POST", r"/interactions/\d+/[^/]+/callback")
    assert all(c.json["data"]["flags"] & 64 for c in callbacks)  # ephemeral
    answers = {
        c.path.split("/")[3]: c.json["content"]
        for c in fake_discord.calls_to("PATCH", r"/webhooks/.*@original")
    }
    assert "2,000 tokens (1,500 in, 500 out), $0.0005" in answers[usage["token"]]
    assert answers[forget["token"]] == core.texts.get("forget_done", count=1)
    assert not await core.store.has_turns(f"discord:{GUILD}:{GENERAL}::")
