"""The one place that uses discord.py below its documented API.

* Message writes go through the client's HTTP client (``Client.http``,
  ``handle_message_parameters``, ``HTTPClient.send_message`` / ``edit_message``):
  discord.py's rate limits, retries and errors, without the full ``discord.Message``
  that ``Messageable.send`` and ``PartialMessage.edit`` build from every response
  (PERFORMANCE.md, "Discord writes skip discord.Message").
* A REST base other than Discord's (``Route.BASE``) and the gateway that base names
  (``DiscordWebSocket.DEFAULT_GATEWAY``), for a proxy or a test double. discord.py
  has no public setting for either; both run once, at start. The base's host also
  serves attachments (``api_host``), as Discord's CDN does for Discord's API.

Written against discord.py :data:`WRITTEN_AGAINST` (the pin in requirements.txt).
``tests/test_compat.py`` checks the shape used here and names the installed version
when it changed: after an upgrade, that file fails and nothing else should.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import discord
import discord.gateway
import discord.http
import yarl
from discord.utils import MISSING

if TYPE_CHECKING:  # importing it at run time is circular in discord.py
    from discord.types.message import MessageReference as MessageReferencePayload

DISTRIBUTION = "discord.py"
WRITTEN_AGAINST = "2.7.1"


async def send_message(
    client: discord.Client,
    channel_id: int,
    text: str,
    *,
    allowed_mentions: discord.AllowedMentions,
    reference: MessageReferencePayload | None = None,
) -> str:
    """Post ``text`` in a channel (a reply to ``reference`` that pings nobody); its id."""
    with discord.http.handle_message_parameters(
        content=text,
        allowed_mentions=allowed_mentions,
        previous_allowed_mentions=client.allowed_mentions,
        message_reference=reference if reference is not None else MISSING,
        mention_author=False if reference is not None else None,
    ) as params:
        sent = await client.http.send_message(channel_id, params=params)
    return str(sent["id"])


async def edit_message(
    client: discord.Client,
    channel_id: int,
    message_id: int,
    text: str,
    *,
    allowed_mentions: discord.AllowedMentions,
) -> None:
    """Replace the text of a message the bot posted."""
    with discord.http.handle_message_parameters(
        content=text,
        allowed_mentions=allowed_mentions,
        previous_allowed_mentions=client.allowed_mentions,
    ) as params:
        await client.http.edit_message(channel_id, message_id, params=params)


def point_rest_at(api_url: str) -> None:
    """Send every REST call of the process to ``api_url`` (a class attribute:
    interaction callbacks and webhooks use it too, so one Discord per process)."""
    discord.http.Route.BASE = api_url.rstrip("/")


async def use_gateway_of(client: discord.Client) -> None:
    """Connect to the gateway the REST server names, as Discord clients are meant to."""
    _shards, url, _limits = await client.http.get_bot_gateway()
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)


def api_host() -> str:
    """The host of the REST base in use (``Route.BASE``): Discord's, a proxy's or a
    test double's; attachments on it are downloaded like the CDN's."""
    return urlsplit(discord.http.Route.BASE).hostname or ""
