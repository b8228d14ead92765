"""Pytest fixtures for the fake OpenAI server (import them in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
import pytest_asyncio

from tests.fakes.fake_openai import FakeOpenAI

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


@pytest_asyncio.fixture
async def openai_client(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real SDK client pointed at the fake, SDK retries off (bot.llm retries)."""
    client = openai.AsyncOpenAI(
        api_key=FAKE_API_KEY,
        base_url=fake_openai.base_url + "/v1",
        max_retries=0,
        timeout=5.0,
    )
    try:
        yield client
    finally:
        await client.close()
