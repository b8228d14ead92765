"""Reply sinks: where the core's answer goes in Discord.

Every write uses ``AllowedMentions.none()``, so nothing the model writes
(``@everyone``, a role or a user mention) notifies anyone, and the reply does not
ping its author. Failures raise ``discord.HTTPException`` so the core's delivery
logic can retry or report.
"""

from __future__ import annotations

import logging
from typing import TypeAlias
from urllib.parse import urlsplit

import discord

from bot.attachments import DownloadFailed, download
from bot.errors import PlatformRefused
from bot.tools.approval import action_id
from bot.types import Attachment, PlatformLimits

from . import compat

log = logging.getLogger(__name__)

MAX_LEN = 2000  # characters per message
# Discord allows about 5 message writes per 5 s per channel. A token bucket of
# 2 plus 0.6/s never exceeds 2 + 0.6 * 5 = 5 writes in any 5 s window.
WRITE_BURST = 2
WRITE_RATE = 0.6
MIN_EDIT_INTERVAL_S = 1.0
# Discord shows "typing..." for about 10 s; shown again while a model still thinks.
TYPING_REFRESH_S = 8.0
ORIGINAL = "original"  # the id InteractionSink gives the interaction's own response
# Where attachments live; the API's own host (a proxy, the test double) serves them too.
CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})

NO_PINGS = discord.AllowedMentions.none()

MessageChannel: TypeAlias = (
    discord.TextChannel
    | discord.Thread
    | discord.DMChannel
    | discord.VoiceChannel
    | discord.StageChannel
    | discord.PartialMessageable
)


def channel_limits(streaming: bool) -> PlatformLimits:
    """What a channel or thread allows; ``streaming=False`` posts whole parts only."""
    return PlatformLimits(
        max_len=MAX_LEN,
        can_edit=True,
        edit_burst=WRITE_BURST,
        edit_rate=WRITE_RATE,
        min_edit_interval=MIN_EDIT_INTERVAL_S,
        stream=streaming,
        # discord.py obeys the X-RateLimit headers of every response, as Discord asks
        # ("do not hard-code rate limits"): the first and the final text of a message
        # go out as soon as those allow. Our bucket paces only the edits in between.
        pace_essential=False,
        typing_refresh_s=TYPING_REFRESH_S,
    )


class ChannelSink:
    """Posts into one channel, thread or DM; the first post replies to the question.

    Writes go through discord.py's HTTP client (its rate limits, retries and
    errors) but skip ``Messageable.send`` and ``PartialMessage.edit``: those build
    a full ``discord.Message`` from every response, and all we need is its id
    (adapters/discord/compat.py; PERFORMANCE.md, "Discord writes skip discord.Message").
    """

    def __init__(
        self,
        client: discord.Client,
        channel: MessageChannel,
        limits: PlatformLimits,
        reply_to: discord.PartialMessage | None = None,  # a Message is one too
    ) -> None:
        self.limits = limits
        self.pace_key = str(channel.id)  # Discord's message buckets are per channel
        self._client = client
        self._channel = channel
        self._reference = (
            reply_to.to_reference(fail_if_not_exists=False).to_message_reference_dict()
            if reply_to is not None
            else None
        )

    async def typing(self) -> None:
        """Show "Bot is typing..." (Discord shows it for up to 10 s)."""
        await self._channel.typing()

    async def fetch_file(self, attachment: Attachment, max_bytes: int, timeout_s: float) -> bytes:
        """An attachment's bytes from Discord's CDN (its URL is signed; no token sent)."""
        host = urlsplit(attachment.url).hostname or ""
        if host not in CDN_HOSTS and host != compat.api_host():
            raise DownloadFailed(f"not a Discord file host: {host}")
        return await download(attachment.url, {}, max_bytes, timeout_s)

    async def show_reasoning(self, label: str, summary: str) -> None:
        """A small grey line (subtext) whose thinking is hidden behind a spoiler."""
        hidden = summary.replace("|", "\u2758")  # a "||" inside would end the spoiler
        await compat.send_message(
            self._client,
            self._channel.id,
            f"-# 💭 {label}: ||{hidden}||"[:MAX_LEN],
            allowed_mentions=NO_PINGS,
            reference=None,
        )

    async def send(self, text: str) -> str:
        try:
            sent = await compat.send_message(
                self._client,
                self._channel.id,
                text,
                allowed_mentions=NO_PINGS,
                reference=self._reference,
            )
        except discord.Forbidden as exc:
            raise refused(exc, self._channel.id) from exc
        self._reference = None  # only the first message is a reply (a retry still is)
        return sent

    async def edit(self, message_id: str, text: str) -> None:
        try:
            await compat.edit_message(
                self._client, self._channel.id, int(message_id), text, allowed_mentions=NO_PINGS
            )
        except discord.Forbidden as exc:
            raise refused(exc, self._channel.id) from exc

    async def ask_approval(self, text: str, token: str, allow: str, deny: str) -> str:
        """A tool's approval question with two buttons (bot/tools/approval.py); the
        press comes back as a component interaction (adapter.on_approval)."""
        view = discord.ui.View(timeout=None)  # not stored: the adapter reads the press
        for yes, label, style in (
            (True, allow, discord.ButtonStyle.success),
            (False, deny, discord.ButtonStyle.danger),
        ):
            view.add_item(
                discord.ui.Button(label=label, style=style, custom_id=action_id(token, yes))
            )
        sent = await self._channel.send(text, view=view, allowed_mentions=NO_PINGS)
        return str(sent.id)


class InteractionSink:
    """Answers a slash command privately (ephemeral), visible only to its user."""

    limits = PlatformLimits(max_len=MAX_LEN, can_edit=True, stream=False)

    def __init__(self, interaction: discord.Interaction) -> None:
        self.pace_key = f"interaction:{interaction.id}"  # webhooks have their own buckets
        self._interaction = interaction
        self._answered = False

    async def typing(self) -> None:
        """Acknowledge at once ("thinking..."); Discord drops answers after 3 s otherwise."""
        response = self._interaction.response
        if not response.is_done():
            await response.defer(ephemeral=True, thinking=True)

    async def send(self, text: str) -> str:
        interaction = self._interaction
        if self._answered:
            sent = await interaction.followup.send(
                text, ephemeral=True, allowed_mentions=NO_PINGS, wait=True
            )
            return str(sent.id)
        if interaction.response.is_done():  # deferred: the answer replaces "thinking..."
            await interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)
        self._answered = True
        return ORIGINAL

    async def edit(self, message_id: str, text: str) -> None:
        interaction = self._interaction
        if message_id == ORIGINAL:
            await interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
        else:
            await interaction.followup.edit_message(
                int(message_id), content=text, allowed_mentions=NO_PINGS
            )


def refused(exc: discord.Forbidden, channel_id: int) -> PlatformRefused:
    """A 403 as one line the operator can act on (a retry gets the same 403)."""
    return PlatformRefused(
        f"Discord refused to write in channel {channel_id}: {exc.text or exc.status}"
        f" (code {exc.code}); give the bot View Channel, Send Messages and Send"
        " Messages in Threads there"
    )
