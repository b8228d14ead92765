"""A model per conversation: the allowlist, !model and /model, routing and trimming.

Real discord.py against the fake Discord, the real openai SDK against the fake model
(which records the model and the parameters each request names).
"""

from __future__ import annotations

import json
from typing import Any

from bot.accounting import accounting_for
from bot.config import QuotasConfig, UsageConfig, config_from_dict
from bot.core import Core
from bot.models import Catalog, ModelInfo, Tokenizers
from bot.texts import Texts
from bot.tokens import token_counter_for
from bot.types import Turn
from fakes.fake_discord import PERM_MANAGE_GUILD, FakeDiscord
from fakes.fake_openai import FakeOpenAI, echo_last_user, reply
from storage import MemoryStore
from tests.support import (
    ALICE,
    BOB,
    GENERAL,
    RANDOM,
    CoreFactory,
    answered,
    discord_texts,
    fake_discord,
    mention,
    running_discord,
)

__all__ = ["fake_discord"]  # the fixture, used by name

WAIT_S = 8.0
CATALOG = Catalog(
    [
        ModelInfo("gpt-4o-mini", 8000, "auto", "auto"),
        ModelInfo("o3-mini", 8000, "off", "auto"),
        ModelInfo("tiny-local", 620, "off", "off"),  # 620 - 500 output: room for little
    ]
)


def test_the_catalog_is_the_default_model_plus_the_list_with_inherited_settings() -> None:
    cfg = config_from_dict(
        {
            "openai": {
                "model": "gpt-4o-mini",
                "context_tokens": 16000,
                "vision": "on",
                "models": ["o3-mini", {"name": "llama", "context_tokens": 4096, "vision": "off"}],
            }
        },
        {"OPENAI_API_KEY": "sk-test"},
    )
    catalog = Catalog.from_config(cfg.openai)
    assert [m.name for m in catalog.models] == ["gpt-4o-mini", "o3-mini", "llama"]
    assert catalog.get("o3-mini") == ModelInfo("o3-mini", 16000, "on", "auto")
    assert catalog.get("llama").context_tokens == 4096
    assert catalog.get("llama").vision == "off"
    assert catalog.get("gone-from-the-list") is catalog.default
    assert catalog.find("O3-MINI") is catalog.get("o3-mini")


async def say(fake: FakeDiscord, core: Core, author: dict[str, Any], text: str, count: int) -> None:
    await fake.send_message(GENERAL, author, mention(fake, text), mentions=(fake.bot,))
    await answered(fake, core, GENERAL, count)


async def test_model_shows_the_list_and_admins_pick_a_model_that_then_answers(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    store = MemoryStore()
    await store.open()
    accounting = accounting_for(  # the !model list shows prices from usage.prices
        store,
        usage=UsageConfig(prices=("o3-mini 1.1 4.4",)),
        quotas=QuotasConfig(),
        texts=Texts("en"),
        counter=token_counter_for("gpt-4o-mini"),
        model_name="gpt-4o-mini",
    )
    core = await core_factory(store=store, models=CATALOG, accounting=accounting)
    fake_openai.reply_fn = echo_last_user
    async with running_discord(fake_discord, core):
        await say(fake_discord, core, ALICE, "!model", 1)
        await say(fake_discord, core, ALICE, "!model o3-mini", 2)  # not an admin
        await say(fake_discord, core, BOB, "!model gpt-9", 3)
        await say(fake_discord, core, BOB, "!model O3-mini", 4)
        await say(fake_discord, core, ALICE, "think hard", 5)
    shown, denied, unknown, chosen, _ = discord_texts(fake_discord, GENERAL)
    assert shown.startswith("This conversation uses `gpt-4o-mini`.")
    assert "`o3-mini` ($1.1 in / $4.4 out per million tokens)" in shown
    assert denied == "Only admins can change the model here."
    assert unknown.startswith("There is no model called `gpt-9` here.")
    assert chosen == "From your next message on, this conversation uses `o3-mini`."
    (request,) = fake_openai.chat_requests
    assert request["model"] == "o3-mini"
    assert "temperature" not in request and request["max_completion_tokens"] == 500

    # After a restart (the same database, a new core) the conversation keeps it; another
    # channel still has the default.
    await core.close(1.0)
    core = await core_factory(store=store, models=CATALOG)
    async with running_discord(fake_discord, core):
        await say(fake_discord, core, ALICE, "again", 6)
        await fake_discord.send_message(
            RANDOM, ALICE, mention(fake_discord, "hi"), mentions=(fake_discord.bot,)
        )
        await answered(fake_discord, core, RANDOM)
    again, elsewhere = fake_openai.chat_requests[1:]
    assert again["model"] == "o3-mini" and elsewhere["model"] == "gpt-4o-mini"
    assert elsewhere["temperature"] == 0.5  # the default model keeps its parameters


async def test_the_history_is_trimmed_to_the_chosen_models_context(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory(models=CATALOG, model_policy="anyone")
    fake_openai.script(*(reply("A fairly short answer of a few words.") for _ in range(4)))
    async with running_discord(fake_discord, core):
        await say(fake_discord, core, ALICE, "first question " + "word " * 40, 1)
        await say(fake_discord, core, ALICE, "second question", 2)
        await say(fake_discord, core, ALICE, "!model tiny-local", 3)
        await say(fake_discord, core, ALICE, "third question", 4)
    on_default, on_tiny = fake_openai.chat_requests[1:]
    assert "first question" in json.dumps(on_default["messages"])
    assert "first question" not in json.dumps(on_tiny["messages"])  # no room in 120 tokens
    assert on_tiny["model"] == "tiny-local"
    assert on_tiny["messages"][-1]["content"].endswith("third question")


async def test_slash_model_offers_the_list_as_choices_and_picks_one(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory(models=CATALOG)
    async with running_discord(fake_discord, core):
        (command,) = [c for c in fake_discord.commands if c["name"] == "model"]
        (option,) = command["options"]
        assert [c["value"] for c in option["choices"]] == ["gpt-4o-mini", "o3-mini", "tiny-local"]
        await fake_discord.send_interaction(
            GENERAL, BOB, "model", {"name": "o3-mini"}, permissions=PERM_MANAGE_GUILD
        )
        await fake_discord.wait_until(
            lambda: bool(fake_discord.calls_to("PATCH", r"/webhooks/.*@original")), WAIT_S
        )
        fake_openai.script(reply("ok"))
        await say(fake_discord, core, ALICE, "hello", 1)
    (original,) = fake_discord.calls_to("PATCH", r"/webhooks/.*@original")
    assert (
        original.json["content"] == "From your next message on, this conversation uses `o3-mini`."
    )
    assert fake_openai.chat_requests[0]["model"] == "o3-mini"


async def test_with_one_model_there_is_nothing_to_pick(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory()
    async with running_discord(fake_discord, core):
        await say(fake_discord, core, BOB, "!model o3-mini", 1)
    assert discord_texts(fake_discord, GENERAL) == [
        "This bot answers with `gpt-4o-mini`; there is no other model to pick."
    ]


async def test_trimming_counts_with_the_chosen_models_tokenizer() -> None:
    default = token_counter_for("gpt-4o-mini")
    tokenizers = Tokenizers(default)
    assert await tokenizers.for_model("o3-mini") is default  # the same encoding
    older = await tokenizers.for_model("gpt-4")
    assert older.encoding_name == "cl100k_base"
    assert await tokenizers.for_model("gpt-3.5-turbo") is older  # one per encoding
    # Stored counts (made with the default encoding) are redone in the chosen one;
    # what a count holds beyond the text (here 7 tokens of tool calls) stays.
    text = "안녕하세요, 오늘 회의록을 정리해 주실 수 있나요? " * 20
    turn = Turn("user", text, default.count(text) + 7, id=41)
    (redone,) = tokenizers.recount([turn], older)
    assert redone.tokens == older.count(text) + 7 != turn.tokens
    assert tokenizers.recount([turn], default) == [turn]
    text = "Grüße aus dem Stream 👋 " * 20
    assert older.count(text) != default.count(text)
