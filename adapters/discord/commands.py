"""The slash commands /reset, /system, /usage, /forget, /model, /tools and /help.

Each one hands ``(interaction, name, argument)`` to the adapter, which turns it
into a core command for the conversation of the channel or thread it was used in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord
from discord import app_commands

from bot.commands import COMMANDS
from bot.texts import Texts

OnCommand = Callable[[discord.Interaction, str, str], Awaitable[None]]
MAX_CHOICES = 25  # Discord shows at most this many choices for an option


def build_tree(
    client: discord.Client, texts: Texts, on_command: OnCommand, models: Sequence[str] = ()
) -> app_commands.CommandTree:
    """A CommandTree for ``client`` with the bot's commands; ``/model`` offers ``models``
    as choices (past MAX_CHOICES, or with none, any name may be typed)."""
    tree: app_commands.CommandTree = app_commands.CommandTree(client)

    async def reset(interaction: discord.Interaction) -> None:
        await on_command(interaction, "reset", "")

    async def help_(interaction: discord.Interaction) -> None:
        await on_command(interaction, "help", "")

    async def tools(interaction: discord.Interaction) -> None:
        await on_command(interaction, "tools", "")

    @app_commands.describe(text=texts.get("slash_system_text"))
    async def system(interaction: discord.Interaction, text: str | None = None) -> None:
        await on_command(interaction, "system", (text or "").strip())

    async def usage(interaction: discord.Interaction) -> None:
        await on_command(interaction, "usage", "")

    @app_commands.describe(who=texts.get("slash_forget_who"))
    async def forget(interaction: discord.Interaction, who: str = "me") -> None:
        await on_command(interaction, "forget", who.strip())

    @app_commands.describe(name=texts.get("slash_model_name"))
    async def model(interaction: discord.Interaction, name: str | None = None) -> None:
        await on_command(interaction, "model", (name or "").strip())

    if 1 < len(models) <= MAX_CHOICES:
        choices = [app_commands.Choice(name=m, value=m) for m in models]
        model = app_commands.choices(name=choices)(model)

    callbacks = {  # one per bot.commands entry
        "reset": reset,
        "system": system,
        "usage": usage,
        "forget": forget,
        "model": model,
        "tools": tools,
        "help": help_,
    }
    for spec in COMMANDS.values():
        command: app_commands.Command[Any, ..., None] = app_commands.Command(
            name=spec.name, description=texts.get(spec.description), callback=callbacks[spec.name]
        )
        tree.add_command(command)
    return tree
