"""The slash commands /reset, /system, /tools and /help, registered on a CommandTree.

Each one hands ``(interaction, name, argument)`` to the adapter, which turns it
into a core command for the conversation of the channel or thread it was used in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from bot.commands import COMMANDS
from bot.texts import Texts

OnCommand = Callable[[discord.Interaction, str, str], Awaitable[None]]


def build_tree(
    client: discord.Client, texts: Texts, on_command: OnCommand
) -> app_commands.CommandTree:
    """A CommandTree for ``client`` with the bot's three commands."""
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

    callbacks = {
        "reset": reset,
        "system": system,
        "tools": tools,
        "help": help_,
    }  # one per bot.commands entry
    for spec in COMMANDS.values():
        command: app_commands.Command[Any, ..., None] = app_commands.Command(
            name=spec.name, description=texts.get(spec.description), callback=callbacks[spec.name]
        )
        tree.add_command(command)
    return tree
