"""The slash commands /reset, /system and /help, registered on a CommandTree.

Each one hands ``(interaction, name, argument)`` to the adapter, which turns it
into a core command for the conversation of the channel or thread it was used in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

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

    @app_commands.describe(text=texts.get("slash_system_text"))
    async def system(interaction: discord.Interaction, text: str | None = None) -> None:
        await on_command(interaction, "system", (text or "").strip())

    for name, callback, key in (
        ("reset", reset, "slash_reset"),
        ("system", system, "slash_system"),
        ("help", help_, "slash_help"),
    ):
        command: app_commands.Command[Any, ..., None] = app_commands.Command(
            name=name, description=texts.get(key), callback=callback
        )
        tree.add_command(command)
    return tree
