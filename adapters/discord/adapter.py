"""The Discord adapter: one discord.py client, messages in, the core's answers out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import discord
from discord import app_commands

from bot.errors import ShuttingDown, StartupError, StorageError
from bot.lanes import KeyedLock
from bot.shards import ShardPlan, describe, shard_plan
from bot.shutdown import INTAKE_GRACE_S
from bot.tools.approval import parse_action_id
from bot.types import PlatformLimits

from . import compat, target
from .commands import build_tree
from .setup import (
    INVALID_TOKEN,
    MESSAGE_CONTENT_WARNING,
    PRIVILEGED_INTENT_REFUSED,
    SHARDING_REQUIRED,
    gateway_intents,
    invite_url,
)
from .sink import NO_PINGS, ChannelSink, InteractionSink, MessageChannel, channel_limits
from .translate import Policy, command_incoming, moved_to_thread, thread_name, to_incoming

if TYPE_CHECKING:
    from bot.adapter import CoreAPI
    from bot.config import DiscordConfig
    from bot.types import IncomingMessage

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0  # from login to READY + guilds; longer means something is wrong
GUILD_READY_TIMEOUT_S = 2.0  # discord.py's wait for the GUILD_CREATEs after READY
THREAD_ARCHIVE_MINUTES: Final = 1440  # a day without messages
CLOSE_AUTH_FAILED = 4004
CLOSE_SHARDING_REQUIRED = 4011
GATEWAY_CLOSE_NORMAL = 1000  # what discord.py's own close() sends
NOT_ALLOWED_KEY = "not_allowed_here"
NOT_ALLOWED_FALLBACK = "I can't be used here."


MessageHandler = Callable[[discord.Message], Awaitable[None]]
InteractionHandler = Callable[[discord.Interaction], Awaitable[None]]


class _Forwarding:
    """What both gateway clients do: every message to the adapter, and a button
    press (a tool's approval question) to the handler the adapter sets."""

    _forward: MessageHandler
    on_component: InteractionHandler | None = None

    async def on_message(self, message: discord.Message) -> None:
        await self._forward(message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is discord.InteractionType.component and self.on_component:
            await self.on_component(interaction)


class _GatewayClient(_Forwarding, discord.Client):
    """A discord.Client that hands every message to the adapter."""

    def __init__(self, on_message: MessageHandler, **options: Any) -> None:
        super().__init__(**options)
        self._forward = on_message


class _ShardedGatewayClient(_Forwarding, discord.AutoShardedClient):
    """The same over one gateway connection per shard (``discord.shard_count``)."""

    def __init__(self, on_message: MessageHandler, **options: Any) -> None:
        super().__init__(**options)
        self._forward = on_message


class DiscordAdapter:
    """Connects to Discord and feeds messages and slash commands to the core."""

    name = "discord"

    def __init__(
        self,
        cfg: DiscordConfig,
        core: CoreAPI,
        *,
        guild_ready_timeout: float = GUILD_READY_TIMEOUT_S,
        ready_timeout: float = READY_TIMEOUT_S,
        limits: PlatformLimits | None = None,
    ) -> None:
        """``limits`` overrides the channel limits (tests pace faster than Discord)."""
        self._cfg = cfg
        self._core = core
        self._policy = Policy.from_config(cfg)
        self._limits = limits or channel_limits(cfg.streaming)
        self._guild_ready_timeout = guild_ready_timeout
        self._ready_timeout = ready_timeout
        self._client: discord.Client | None = None
        self._shards = shard_plan(cfg.shard_count, cfg.shard_ids)  # None: one connection
        self._tree: app_commands.CommandTree | None = None
        self._task: asyncio.Task[None] | None = None
        # Messages reach the core in gateway order within each conversation; other
        # conversations do not wait while one's message is being stored.
        self._intake = KeyedLock()
        self._handing_over: set[asyncio.Task[Any]] = set()  # stop_intake waits for these
        self.message_content = True  # whether Discord granted the Message Content intent

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, connect, wait for READY; StartupError on a bad token."""
        try:
            await self._connect(message_content=True)
        except discord.PrivilegedIntentsRequired:
            log.warning(MESSAGE_CONTENT_WARNING)
            self.message_content = False
            try:
                await self._connect(message_content=False)
            except discord.PrivilegedIntentsRequired:
                raise StartupError(PRIVILEGED_INTENT_REFUSED) from None
        self._log_identity()
        if self._tree is not None:
            await self._sync_commands(self._tree)

    @property
    def connected(self) -> bool:
        """Whether the gateway session is up now (the metrics endpoint's /readyz)."""
        client = self._client
        return client is not None and client.is_ready() and not client.is_closed()

    async def wait_closed(self) -> None:
        """Return when the gateway connection ended for good."""
        if self._task is None:
            return
        try:
            await asyncio.shield(self._task)
        except Exception as exc:
            log.error("Discord: the connection ended: %s", exc)

    async def stop_intake(self) -> None:
        """Stop reading the gateway (no new messages or commands), then wait for the
        messages already being handed to the core. REST stays open for the answers."""
        task, client = self._task, self._client
        if task is not None and not task.done():
            task.cancel()  # the reading loop; discord.py's close() would also end REST
            await asyncio.wait({task})
        if client is not None and client.ws is not None:
            with contextlib.suppress(Exception):
                await client.ws.close(code=GATEWAY_CLOSE_NORMAL)
        if isinstance(client, discord.AutoShardedClient):  # each shard reads on its own
            for shard in client.shards.values():
                with contextlib.suppress(Exception):
                    await shard.disconnect()
        if self._handing_over:
            await asyncio.wait(set(self._handing_over), timeout=INTAKE_GRACE_S)

    async def close(self) -> None:
        """Close the connection and REST; safe to call twice."""
        await self.stop()

    async def stop(self) -> None:
        """Close the connection; safe to call twice."""
        client, task = self._client, self._task
        if client is not None and not client.is_closed():
            await client.close()
        if task is not None:
            await asyncio.wait({task})  # the gateway loop ends once the client is closed
            if not task.cancelled() and task.exception() is not None:
                log.info("Discord: the gateway stopped with %r", task.exception())

    def sink_for(self, target_text: str) -> ChannelSink | None:
        """A sink for a stored reply target (restart recovery), without any REST call:
        a partial channel, and a partial message as the reply reference."""
        client, where = self._client, target.decode(target_text)
        if client is None or where is None:
            return None
        channel = client.get_partial_messageable(where.channel, guild_id=where.guild)
        reply_to = None if where.reply_to is None else channel.get_partial_message(where.reply_to)
        return ChannelSink(client, channel, self._limits, reply_to)

    def _new_client(self, message_content: bool) -> _GatewayClient | _ShardedGatewayClient:
        options: dict[str, Any] = {
            "intents": gateway_intents(message_content),
            "allowed_mentions": NO_PINGS,
            "max_messages": None,  # replies come with the referenced message; no cache needed
            "chunk_guilds_at_startup": False,
            "guild_ready_timeout": self._guild_ready_timeout,
        }
        plan = self._shards
        if plan is None:
            return _GatewayClient(self.on_message, **options)
        ids = list(plan.ids) or None  # None: every shard
        return _ShardedGatewayClient(
            self.on_message, shard_count=plan.count, shard_ids=ids, **options
        )

    async def _connect(self, *, message_content: bool) -> None:
        client = self._new_client(message_content)
        client.on_component = self.on_component
        self._client = client
        self._tree = None
        if self._cfg.slash_commands:
            models = self._core.settings.model_names
            self._tree = build_tree(client, self._core.texts, self.on_command, models)
        try:
            await client.login(self._cfg.token)
        except discord.LoginFailure:
            await client.close()
            raise StartupError(INVALID_TOKEN) from None
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            await client.close()
            raise StartupError(f"Discord: could not log in: {exc}") from None
        if self._cfg.api_url:
            await compat.use_gateway_of(client)
        task = asyncio.create_task(client.connect(reconnect=True), name="discord-gateway")
        await self._until_ready(client, task)
        self._task = task

    async def _until_ready(self, client: discord.Client, task: asyncio.Task[None]) -> None:
        ready = asyncio.ensure_future(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait(
                {ready, task}, timeout=self._ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if ready in done and not task.done():
            return
        await client.close()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise StartupError(f"Discord: not connected after {self._ready_timeout:.0f} s")
        raise _startup_error(task.exception())

    def _log_identity(self) -> None:
        client = self._client
        assert client is not None and client.user is not None
        log.info(
            "Discord: logged in as %s (id %s) in %d server(s)%s",
            client.user.name,
            client.user.id,
            len(client.guilds),
            _on_shards(self._shards, client),
        )
        app_id = client.application_id or client.user.id
        log.info("Discord: invite URL: %s", invite_url(app_id, self._cfg.auto_thread))

    async def _sync_commands(self, tree: app_commands.CommandTree) -> None:
        try:
            synced = await tree.sync()
        except (discord.DiscordException, aiohttp.ClientError) as exc:
            log.warning("Discord: could not register slash commands (%s); mentions still work", exc)
            return
        log.info("Discord: slash commands registered: %s", " ".join(f"/{c.name}" for c in synced))

    # -- events ------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """A gateway MESSAGE_CREATE: answer it when it is meant for the bot."""
        task = asyncio.current_task()
        if task is not None:
            self._handing_over.add(task)
        try:
            await self._on_message(message)
        finally:
            if task is not None:
                self._handing_over.discard(task)

    async def _on_message(self, message: discord.Message) -> None:
        client = self._client
        if client is None or client.user is None:
            return
        msg = to_incoming(message, client.user.id, self._policy)
        if msg is None or not (msg.addressed or msg.in_thread):
            return
        channel: MessageChannel = message.channel  # type: ignore[assignment]
        reply_to: discord.Message | None = message
        if self._wants_thread(msg, channel):
            thread = await self._open_thread(message, msg)
            if thread is not None:
                msg, channel, reply_to = moved_to_thread(msg, thread.id), thread, None
        await self._hand_over(msg, ChannelSink(client, channel, self._limits, reply_to))

    async def on_component(self, interaction: discord.Interaction) -> None:
        """A button press: the answer to a tool's approval question, from its asker only."""
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = data.get("custom_id")
        parsed = parse_action_id(custom_id) if isinstance(custom_id, str) else None
        if parsed is None:
            return
        token, yes = parsed
        answered = self._core.answer_approval(token, str(interaction.user.id), yes)
        with contextlib.suppress(discord.HTTPException):
            if answered:  # the buttons go; the bot says what was decided
                await interaction.response.edit_message(view=None)
            else:
                text = self._core.texts.get("tool_no_question")
                await interaction.response.send_message(text, ephemeral=True)

    async def on_command(self, interaction: discord.Interaction, name: str, arg: str) -> None:
        """A slash command, answered privately in the conversation it was used in."""
        sink = InteractionSink(interaction)
        msg = command_incoming(interaction, self._policy, name, arg)
        if msg is None:
            await sink.send(self._not_allowed_text())
            return
        await sink.typing()  # acknowledge now: the command may queue behind an answer
        try:
            await self._core.run_command(name, arg, msg, sink)
        except (StorageError, ShuttingDown) as exc:
            await self._refused(msg.message_id, sink, exc)
        except Exception:
            log.exception("Discord: /%s failed", name)
            with contextlib.suppress(Exception):
                await sink.send(self._core.texts.get("error_internal"))

    def _wants_thread(self, msg: IncomingMessage, channel: object) -> bool:
        if not (self._cfg.auto_thread and msg.addressed) or msg.in_thread:
            return False
        if msg.text.startswith(self._core.settings.command_prefix):
            return False  # "!reset" should act on the channel, not open a thread
        return isinstance(channel, discord.TextChannel)

    async def _open_thread(
        self, message: discord.Message, msg: IncomingMessage
    ) -> discord.Thread | None:
        try:
            return await message.create_thread(
                name=thread_name(msg), auto_archive_duration=THREAD_ARCHIVE_MINUTES
            )
        except discord.HTTPException as exc:
            log.warning("Discord: could not open a thread (%s); answering in the channel", exc)
            return None

    async def _hand_over(self, msg: IncomingMessage, sink: ChannelSink) -> None:
        try:
            async with self._intake(msg.key.as_str()):
                await self._core.handle(msg, sink)
        except (StorageError, ShuttingDown) as exc:
            await self._refused(msg.message_id, sink, exc)
        except Exception:
            log.exception("Discord: could not take message %s", msg.message_id)
            with contextlib.suppress(Exception):
                await sink.send(self._core.texts.get("error_internal"))

    async def _refused(
        self, message_id: str, sink: ChannelSink | InteractionSink, exc: Exception
    ) -> None:
        """The core did not take the message: one log line; if the store failed, a
        short reply (Discord never delivers a message again, so the user must retry)."""
        if isinstance(exc, ShuttingDown):
            log.info("Discord: message %s arrived while shutting down; not taken", message_id)
            return
        log.error("Discord: message %s not taken: %s", message_id, exc)
        with contextlib.suppress(Exception):
            await sink.send(self._core.texts.get("error_storage"))

    def _not_allowed_text(self) -> str:
        try:
            return self._core.texts.get(NOT_ALLOWED_KEY)
        except KeyError:
            return NOT_ALLOWED_FALLBACK


def _on_shards(plan: ShardPlan | None, client: discord.Client) -> str:
    """``, on shards 0, 1 of 2`` for the identity line; empty when not sharded."""
    running = client.shard_count if isinstance(client, discord.AutoShardedClient) else None
    shown = describe(plan, running)
    return f", on {shown}" if shown else ""


def _startup_error(exc: BaseException | None) -> BaseException:
    """What a failed first connection means for the operator."""
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return exc  # start() retries without Message Content
    if isinstance(exc, discord.ConnectionClosed):
        if exc.code == CLOSE_AUTH_FAILED:
            return StartupError(INVALID_TOKEN)
        if exc.code == CLOSE_SHARDING_REQUIRED:
            return StartupError(SHARDING_REQUIRED)
        return StartupError(f"Discord: the gateway closed the connection (code {exc.code})")
    return StartupError(f"Discord: could not connect to the gateway: {exc}")


def point_at(api_url: str) -> None:
    """Send discord.py's REST calls to ``api_url`` (a proxy or a test double).

    discord.py keeps its REST base on a class attribute (interaction callbacks and
    webhooks use it too), so this holds for the whole process: one Discord per process.
    """
    compat.point_rest_at(api_url)
