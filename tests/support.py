"""Test doubles for the core: a recording sink and a core built on the fake OpenAI."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import openai
import pytest_asyncio

from bot.config import Language, PromptPolicy, ResetPolicy
from bot.core import Core, CoreSettings
from bot.llm import OpenAIChat
from bot.modelcap import CappedModel
from bot.store import Store
from bot.texts import Texts
from bot.tokens import token_counter_for
from bot.types import ConversationKey, IncomingMessage, PlatformLimits
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
) -> Core:
    """A real core on the given client and store, with short deadlines for tests."""
    model = OpenAIChat(
        client,
        model="gpt-4o-mini",
        temperature=0.5,
        max_output_tokens=max_output_tokens,
        request_timeout_s=request_timeout_s,
        first_token_timeout_s=min(first_token_timeout_s, request_timeout_s),
        max_retries=max_retries,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )
    return Core(
        store=store,
        model=model
        if max_concurrent_requests is None
        else CappedModel(model, max_concurrent_requests),
        counter=token_counter_for("gpt-4o-mini"),
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
        ),
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
