"""Pytest fixtures for the fake OpenAI server (import them in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import openai
import pytest
import pytest_asyncio

from bot.llm import make_client
from fakes.fake_openai import FakeOpenAI

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
FAKE_API_KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback traffic must not go through a proxy set in the environment."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # The SDK would otherwise read these and talk to somewhere else.
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)


@pytest_asyncio.fixture
async def fake_openai(no_proxy_env: None) -> AsyncIterator[FakeOpenAI]:
    """A fake server that answers at once (no delays), 4 chunks per answer."""
    async with FakeOpenAI(ttft_s=0.0, chunks=4, chunk_interval_s=0.0) as fake:
        yield fake


@dataclass(frozen=True, slots=True)
class _ClientSettings:
    api_key: str
    base_url: str
    request_timeout_s: float


def sdk_client(
    base_url: str, api_key: str = FAKE_API_KEY, timeout_s: float = 5.0
) -> openai.AsyncOpenAI:
    """The SDK client the bot builds (``bot.llm.make_client``: transport, retries off)."""
    return make_client(_ClientSettings(api_key, base_url, timeout_s))


@pytest_asyncio.fixture
async def openai_client(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real SDK client pointed at the fake, SDK retries off (bot.llm retries)."""
    client = sdk_client(fake_openai.base_url + "/v1")
    try:
        yield client
    finally:
        await client.close()
