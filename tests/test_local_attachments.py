"""A text file's content reaches the real local model (llama.cpp + SmolLM2) through
the real Discord adapter: the file is served by the fake Discord's CDN, read by the
core, and the model's answer can only quote it if it saw it."""

from __future__ import annotations

import contextlib

import pytest

from bot.core import Core, CoreSettings
from bot.local_model import start_local_model
from bot.texts import Texts
from bot.tokens import token_counter_for
from fakes.fake_discord import FakeDiscord
from storage import MemoryStore
from tests.support import (
    ALICE,
    DM_CHANNEL,
    answered,
    discord_texts,
    fake_discord,
    local_chat,
    running_discord,
    skip_unless_local_model_installed,
)

__all__ = ["fake_discord"]  # the fixture, used by name

CODE_WORD = "ZEBRA"
MAX_OUTPUT_TOKENS = 24


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


async def test_a_text_files_content_reaches_the_local_model(fake_discord: FakeDiscord) -> None:
    skip_unless_local_model_installed()
    store = MemoryStore()
    await store.open()
    secret = fake_discord.add_file(
        DM_CHANNEL, "secret.txt", f"The secret code word is {CODE_WORD}.\n".encode()
    )
    async with contextlib.AsyncExitStack() as stack:
        model = await stack.enter_async_context(start_local_model())
        chat = await stack.enter_async_context(
            local_chat(model.base_url, model.model, MAX_OUTPUT_TOKENS)
        )
        core = Core(
            store=store,
            model=chat,
            counter=token_counter_for(model.model),
            texts=Texts("en"),
            settings=CoreSettings(
                system_prompt="You answer questions about the user's files. Be brief.",
                context_tokens=model.context_tokens,
                max_output_tokens=MAX_OUTPUT_TOKENS,
                model_name=model.model,
            ),
        )
        async with running_discord(fake_discord, core):
            await fake_discord.send_message(
                DM_CHANNEL,
                ALICE,
                "What is the secret code word in secret.txt? Reply with the word only.",
                attachments=(secret,),
            )
            await answered(fake_discord, core, DM_CHANNEL)
        await core.close(1.0)
    (shown,) = discord_texts(fake_discord, DM_CHANNEL)
    assert CODE_WORD.lower() in shown.lower()
