"""The command registry (bot/commands.py): the core runs every registered command,
its help names each, and Discord gets one slash command for each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord
import pytest
import pytest_asyncio

from adapters.discord.commands import build_tree
from bot.commands import COMMANDS
from bot.config import Language
from bot.core import Core
from bot.texts import CATALOG, Texts
from fakes.fake_model import FakeModel
from storage.memory import MemoryStore
from tests.support import RecordingSink, core_on, message, settle

LANGUAGES: list[Language] = ["en", "ko"]
DISCORD_DESCRIPTION_LIMIT = 100


@pytest_asyncio.fixture(params=LANGUAGES)
async def core(request: pytest.FixtureRequest) -> AsyncIterator[Core]:
    """A core in each language, on an in-process model and a MemoryStore."""
    store = MemoryStore()
    await store.open()
    made = core_on(FakeModel(), store, language=request.param)
    yield made
    await made.close(1.0)


async def answer_to(core: Core, text: str) -> str:
    sink = RecordingSink()
    await core.handle(message(text), sink)
    await settle(core)
    assert len(sink.texts) == 1
    return sink.texts[0]


async def test_help_names_every_registered_command(core: Core) -> None:
    helped = await answer_to(core, "!help")
    for name in COMMANDS:
        assert f"`!{name}" in helped, name


@pytest.mark.parametrize("name", list(COMMANDS))
async def test_every_registered_command_is_known_to_the_core(core: Core, name: str) -> None:
    answered = await answer_to(core, f"!{name.upper()}")  # names match in any case
    assert answered != core.texts.get("unknown_command", command=name, prefix="!")
    assert answered != core.texts.get("unknown_command", command=name.upper(), prefix="!")


async def test_a_name_not_registered_is_unknown(core: Core) -> None:
    answered = await answer_to(core, "!frobnicate")
    assert answered == core.texts.get("unknown_command", command="frobnicate", prefix="!")


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_command_has_a_description_discord_accepts(language: Language) -> None:
    assert set(CATALOG) == set(LANGUAGES)
    for spec in COMMANDS.values():
        description = Texts(language).get(spec.description)
        assert 0 < len(description) <= DISCORD_DESCRIPTION_LIMIT, spec.name


@pytest.mark.parametrize("language", LANGUAGES)
async def test_discord_registers_one_slash_command_per_registered_command(
    language: Language,
) -> None:
    """Built with the real discord.py CommandTree (nothing is sent: no login)."""
    texts = Texts(language)

    async def on_command(interaction: discord.Interaction, name: str, arg: str) -> None:
        raise AssertionError("not called: no interaction arrives here")

    client = discord.Client(intents=discord.Intents.none())
    try:
        tree = build_tree(client, texts, on_command)
        registered = {
            c.name: "" if isinstance(c, discord.app_commands.ContextMenu) else c.description
            for c in tree.get_commands()
        }
    finally:
        await client.close()
    assert registered == {spec.name: texts.get(spec.description) for spec in COMMANDS.values()}
