"""The Slack adapter: slack_bolt's AsyncApp over Socket Mode or HTTP.

Events are acknowledged as soon as they are stored (``process_before_response=True``):
the listener only translates the event and hands it to ``core.handle``, which stores
it durably and queues the answer, so the ack comes within milliseconds and an acked
event is never lost in a crash. A retried
or redelivered event carries the same message ``ts`` and is dropped by the
core's durable dedupe, also after a restart. An event the store could not take,
or one that arrives while the bot stops, is not acknowledged (bolt answers 500), so
Slack delivers it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import PlatformUnavailable, ShuttingDown, StartupError, StorageError
from bot.redact import redact_url
from bot.shutdown import INTAKE_GRACE_S
from bot.tools.approval import ACTION_PREFIX
from bot.types import PlatformLimits

from . import target
from .approval import answer_blocks, pressed
from .bolt_setup import bolt_logger, tokenless_twin
from .names import UserNames, display_name
from .pacing import ReadsRateLimitRetry, SlackPaces
from .signed import SignatureGate
from .sink import SinkTexts, SlackSink, TeamFallbacks
from .translate import BotIdentity, Inbound, Policy, accept, names_in_order, to_inbound

if TYPE_CHECKING:
    from bot.adapter import CoreAPI
    from bot.config import SlackConfig

log = logging.getLogger(__name__)

SLACK_API_URL = "https://slack.com/api/"
RATE_LIMIT_RETRIES = 5  # 429s retried after Retry-After, per call
CONNECT_TIMEOUT_S = 30.0  # opening the Socket Mode websocket at start
SOCKET_PING_INTERVAL_S = 10.0
AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
TEXT_KEYS = {"status": "slack_status", "placeholder": "slack_placeholder"}
# auth.test at start: errors that may pass are tried again after these waits.
START_RETRY_WAITS_S = (1.0, 2.0, 4.0, 8.0)
PASSING_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
HTTP_TOO_MANY = 429
HTTP_SERVER_ERROR = 500


class SlackAdapter:
    """One Slack workspace connection feeding the core."""

    name = "slack"

    def __init__(
        self,
        cfg: SlackConfig,
        core: CoreAPI,
        *,
        api_base_url: str | None = None,
        ping_interval: float = SOCKET_PING_INTERVAL_S,
        limits: PlatformLimits | None = None,
        paces: SlackPaces | None = None,
    ) -> None:
        self._slack = cfg
        self._core = core
        # slack_sdk joins method names onto the base URL: it must end with a slash.
        self._base_url = (api_base_url or SLACK_API_URL).rstrip("/") + "/"
        self._ping_interval = ping_interval
        self._limits = limits  # tests and benchmarks may pace differently
        self._paces = paces or SlackPaces()
        self._policy = Policy.from_config(cfg)
        self._fallbacks = TeamFallbacks()
        self._texts = _sink_texts(core)
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        self._bot: BotIdentity | None = None
        self._names: UserNames | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()
        self._stopping = False
        self.http_port: int | None = None  # the bound port in HTTP mode
        self.events_handled = 0  # events our listener finished with (answered or not)

    @property
    def bot(self) -> BotIdentity | None:
        """Who we are (known after start)."""
        return self._bot

    @property
    def names(self) -> UserNames | None:
        """The user name cache (made at start)."""
        return self._names

    async def start(self) -> None:
        """Check the tokens, then connect; StartupError with one line if they are bad.

        Which tokens each mode needs was checked with the config (bot/config.py)."""
        self._session = aiohttp.ClientSession()
        self._client = AsyncWebClient(
            token=self._slack.bot_token,
            base_url=self._base_url,
            session=self._session,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(),
                # Reads only: the sinks wait out 429s of writes with the pacer.
                ReadsRateLimitRetry(max_retry_count=RATE_LIMIT_RETRIES),
            ],
            logger=logging.getLogger(f"{__name__}.web"),
        )
        try:
            auth = await self._auth_test(self._client)
            self._bot = BotIdentity(
                user_id=str(auth.get("user_id") or ""),
                bot_id=str(auth.get("bot_id") or ""),
                name=str(auth.get("user") or "bot"),
            )
            self._names = UserNames(self._lookup_name)
            app = self._build_app(self._client, auth)
            if self._slack.mode == "http":
                await self._start_http(app)
                where = f"{self._slack.http_host}:{self.http_port}{self._slack.http_path}"
                transport = f"HTTP on {where}"
            else:
                await self._start_socket(app, self._client)
                transport = "Socket Mode"
        except BaseException:
            await self._close_connections()
            raise
        log.info(
            "Slack: signed in as @%s (%s) in workspace %s (%s) via %s",
            self._bot.name,
            self._bot.user_id,
            auth.get("team"),
            auth.get("team_id"),
            transport,
        )

    @property
    def connected(self) -> bool:
        """Whether the socket or HTTP listener is open (the metrics endpoint's /readyz)."""
        return not self._closed.is_set() and (self._socket is not None or self._runner is not None)

    async def wait_closed(self) -> None:
        """Return once stop() ran (the socket client reconnects on its own)."""
        await self._closed.wait()

    async def stop_intake(self) -> None:
        """Acknowledge nothing more: events from now on are refused un-acked (Slack
        delivers them again, to the next process), events being stored finish and
        are acked, then the socket or HTTP listener closes. The web client stays
        open for answers in flight. Safe to call twice."""
        self._stopping = True
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=INTAKE_GRACE_S)
        await self._close_intake()

    async def close(self) -> None:
        """Close every connection (after the answers in flight); safe to call twice."""
        self._stopping = True
        try:
            await self._close_connections()
        finally:
            self._closed.set()

    async def stop(self) -> None:
        """``stop_intake`` then ``close``, for a caller that has no answers to wait for."""
        await self.stop_intake()
        await self.close()

    # -- start-up ------------------------------------------------------------

    async def _auth_test(self, client: AsyncWebClient) -> Mapping[str, Any]:
        """Who the token belongs to; an error that may pass is tried again a few times."""
        for wait in (*START_RETRY_WAITS_S, None):
            try:
                response = await client.auth_test()
            except SlackApiError as exc:
                error = _error(exc)
                if error in AUTH_ERRORS:
                    raise StartupError(
                        f"slack: the bot token (SLACK_BOT_TOKEN) was rejected: {error}"
                    ) from None
                if not _may_pass(exc):
                    raise StartupError(f"slack: auth.test failed: {error or exc}") from None
                # A 429 comes back only once the client's own retries ran out (each
                # after Retry-After): trying again here would multiply the wait.
                if wait is None or _status(exc) == HTTP_TOO_MANY:
                    raise PlatformUnavailable(
                        f"slack: auth.test kept failing ({error or exc}); start again later"
                    ) from None
                log.warning("Slack: auth.test failed (%s); trying again in %.0f s", error, wait)
            except aiohttp.ClientError as exc:
                if wait is None:
                    raise StartupError(f"slack: cannot reach {self._base_url}: {exc}") from None
                log.warning("Slack: cannot reach the API (%s); trying again in %.0f s", exc, wait)
            else:
                return response.data if isinstance(response.data, dict) else {}
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last try returns or raises")

    def _build_app(self, client: AsyncWebClient, auth: Mapping[str, Any]) -> AsyncApp:
        identity = AuthorizeResult.from_auth_test_response(
            bot_token=self._slack.bot_token, auth_test_response=auth
        )

        # Who we are was checked once at start; without this bolt calls auth.test for
        # every event until its first call returns (1,001 calls for a 1,000-event burst).
        async def authorize() -> AuthorizeResult:
            return identity

        app = AsyncApp(
            client=tokenless_twin(client),  # authorize supplies the token (bolt_setup.py)
            authorize=authorize,
            signing_secret=self._slack.signing_secret,
            # Ack once the listener returns: it only stores the message and queues the
            # answer (milliseconds), and an event acked before it was stored would be
            # lost in a crash, since Slack never redelivers an acked event.
            process_before_response=True,
            request_verification_enabled=self._slack.mode == "http",
            logger=bolt_logger(f"{__name__}.bolt"),
            name="chatbridge",
        )

        # bolt injects listener arguments by parameter name; a plain function
        # keeps its signature unambiguous (a bound method would expose self).
        async def on_event(body: dict[str, Any]) -> None:
            await self._on_event(body)

        app.event("app_mention")(on_event)
        app.event("message")(on_event)

        async def on_action(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
            await ack()
            await self._on_action(body, client)

        app.action(re.compile(f"^{ACTION_PREFIX}:"))(on_action)
        app.error(_on_error)
        return app

    async def _start_socket(self, app: AsyncApp, client: AsyncWebClient) -> None:
        url = await self._open_socket_url(client)
        handler = AsyncSocketModeHandler(
            app,
            app_token=self._slack.app_token,
            web_client=client,
            ping_interval=self._ping_interval,
        )
        self._socket = handler

        # Request listeners run one after another: this one runs once bolt's own
        # handler has sent the ack, so no name lookup ever goes out before it.
        async def after_ack(client: object, request: object) -> None:
            self._after_ack()

        handler.client.socket_mode_request_listeners.append(after_ack)
        # The socket client retries forever on its own: the app token was checked
        # above (a clear error instead), and the first connect is bounded. The client
        # asks for a URL of its own (one more call, once, at start).
        try:
            connect = handler.connect_async()  # type: ignore[no-untyped-call]  # slack_bolt: untyped
            await asyncio.wait_for(connect, CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise StartupError(
                f"slack: could not open the Socket Mode websocket {redact_url(url)}"
            ) from None

    async def _open_socket_url(self, client: AsyncWebClient) -> str:
        try:
            response = await client.apps_connections_open(app_token=self._slack.app_token)
        except SlackApiError as exc:
            raise StartupError(
                f"slack: the app-level token (SLACK_APP_TOKEN) was rejected: {_error(exc)}"
                " (it must start with xapp- and have the connections:write scope)"
            ) from None
        except aiohttp.ClientError as exc:
            raise StartupError(f"slack: cannot reach {self._base_url}: {exc}") from None
        return str(response["url"])

    async def _start_http(self, app: AsyncApp) -> None:
        gate = SignatureGate(self._slack.signing_secret)

        async def handle(request: web.Request) -> web.Response:
            if not gate.admits(await request.read(), request.headers):
                return web.Response(status=401, text="invalid signature")
            try:
                bolt_request = await to_bolt_request(request)
            except ValueError:  # signed, yet neither JSON nor a form: Slack never sends it
                log.warning("Slack HTTP: a signed request had an unreadable body; refused")
                return web.Response(status=400, text="unreadable body")
            bolt_response = await app.async_dispatch(bolt_request)
            response = await to_aiohttp_response(bolt_response)
            await response.prepare(request)  # the ack is sent here, then names are looked up
            await response.write_eof()
            self._after_ack()
            return response

        web_app = web.Application()
        web_app.router.add_post(self._slack.http_path, handle)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self._slack.http_host, self._slack.http_port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"slack: cannot listen on {self._slack.http_host}:{self._slack.http_port}:"
                f" {exc.strerror or exc}"
            ) from None
        self.http_port = _bound_port(runner, self._slack.http_port)

    async def _close_intake(self) -> None:
        """Stop receiving events (the websocket or the HTTP listener)."""
        socket, self._socket = self._socket, None
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close_async()  # type: ignore[no-untyped-call]  # slack_bolt: untyped
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()

    async def _close_connections(self) -> None:
        await self._close_intake()
        if self._names is not None:
            await self._names.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- events ------------------------------------------------------------

    async def _on_event(self, body: Mapping[str, Any]) -> None:
        """Stores and queues the event (bolt acks when this returns). Raises only when
        the event was not taken (storage failed, shutting down): bolt then answers 500,
        which in Socket Mode sends no ack, so Slack delivers the event again."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            if self._stopping:
                raise ShuttingDown(str(body.get("event_id") or ""))
            await self._dispatch(body)
        except (StorageError, ShuttingDown):
            raise
        except Exception:
            log.exception("could not handle a Slack event %s", body.get("event_id"))
        finally:
            self.events_handled += 1
            if task is not None:
                self._inflight.discard(task)

    async def _dispatch(self, body: Mapping[str, Any]) -> None:
        bot, names = self._bot, self._names
        if bot is None or names is None:
            return
        event = accept(body, bot, self._policy)
        if event is None:
            return
        # Names come from the cache only: looking them up here would delay the ack
        # (one message can mention thousands of people). Unknown ones stay ids
        # ("@U0123ABC") and are looked up after the ack, for later messages.
        needed = names_in_order(event, bot)
        names.want(needed)
        inbound = to_inbound(body, bot, self._policy, names.known(needed))
        if inbound is None:
            return
        await self._core.handle(inbound.message, self._sink_for(inbound))

    async def _on_action(self, body: Mapping[str, Any], client: AsyncWebClient) -> None:
        """A button press on a tool's approval question: its asker's answer only."""
        found = pressed(body)
        if found is None:
            return
        token, yes, user = found
        if not self._core.answer_approval(token, user, yes):
            return  # someone else's press, or a question already closed
        channel, message = body.get("channel") or {}, body.get("message") or {}
        text = str(message.get("text") or "")
        with contextlib.suppress(SlackApiError):  # the buttons go; the bot says the rest
            await client.chat_update(
                channel=str(channel.get("id") or ""),
                ts=str(message.get("ts") or ""),
                text=text,
                blocks=answer_blocks(text),
            )

    def _after_ack(self) -> None:
        if self._names is not None and not self._stopping:
            self._names.fill()

    def _sink_for(self, inbound: Inbound) -> SlackSink:
        assert self._client is not None
        return self._sink(
            self._client,
            target.Target(
                inbound.team_id, inbound.channel, inbound.reply_thread_ts, inbound.message.author_id
            ),
        )

    def sink_for(self, target_text: str) -> SlackSink | None:
        """A sink for a stored reply target (restart recovery)."""
        where = target.decode(target_text)
        if self._client is None or where is None:
            return None
        return self._sink(self._client, where)

    def _sink(self, client: AsyncWebClient, where: target.Target) -> SlackSink:
        return SlackSink(
            client,
            self._fallbacks,
            team_id=where.team,
            channel=where.channel,
            thread_ts=where.thread_ts,
            user_id=where.user,
            streaming=self._slack.streaming,
            texts=self._texts,
            base_limits=self._limits,
            paces=self._paces,
            pacer=self._core.pacer,
        )

    async def _lookup_name(self, user_id: str) -> str | None:
        assert self._client is not None
        try:
            response = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            log.info("users.info %s failed: %s", user_id, _error(exc))
            return None
        user = response.get("user")
        return display_name(user) if isinstance(user, Mapping) else None


async def _on_error(error: Exception, body: dict[str, Any]) -> None:
    """bolt's error handler: one line for an event we refused (no traceback per
    retry), bolt's usual traceback for anything else. bolt answers 500 either way."""
    event_id = body.get("event_id") if isinstance(body, dict) else None
    if isinstance(error, StorageError):
        log.error("Slack event %s not acked, Slack will retry it: %s", event_id, error)
    elif isinstance(error, ShuttingDown):
        log.info("Slack event %s not acked: shutting down; Slack will retry it", event_id)
    else:
        log.error("Slack: unhandled error in event %s", event_id, exc_info=error)


def _sink_texts(core: CoreAPI) -> SinkTexts:
    """Catalog texts for the status line and placeholder, with English defaults."""
    defaults = SinkTexts()
    values: dict[str, str] = {}
    for field_name, key in TEXT_KEYS.items():
        with contextlib.suppress(KeyError):
            values[field_name] = core.texts.get(key)
    return SinkTexts(
        status=values.get("status", defaults.status),
        placeholder=values.get("placeholder", defaults.placeholder),
    )


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured


def _may_pass(exc: SlackApiError) -> bool:
    """A rate limit or a server-side error: the same call may work in a moment."""
    status = _status(exc)
    return _error(exc) in PASSING_ERRORS or status == HTTP_TOO_MANY or status >= HTTP_SERVER_ERROR


def _status(exc: SlackApiError) -> int:
    return int(getattr(exc.response, "status_code", 200))


def _error(exc: SlackApiError) -> str:
    with contextlib.suppress(AttributeError, KeyError, TypeError):
        return str(exc.response["error"])
    return ""
