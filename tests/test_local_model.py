"""The no-account local model: real llama.cpp server, real SmolLM2, real openai SDK.

Skipped only when the local extra is not installed AND BOT_REQUIRE_LOCAL_MODEL is
unset. CI sets it, so a missing install fails there instead of passing silently.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from bot import local_model
from bot.context import build_messages
from bot.errors import StartupError
from bot.local_model import INSTALL_COMMAND, start_local_model
from bot.tokens import token_counter_for
from bot.types import Answer, Turn
from tests.support import local_chat, skip_unless_local_model_installed

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
MAX_OUTPUT_TOKENS = 48


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


async def test_streams_a_real_answer_from_the_local_model() -> None:
    skip_unless_local_model_installed()
    counter = token_counter_for("smollm2")
    said = [("Alice", "Hi! I'm planning a picnic."), ("Bob", "What food should we bring?")]
    turns = [
        Turn(role="user", content=text, tokens=counter.count(text), author_name=name)
        for name, text in said
    ]
    async with start_local_model() as model:
        assert model.base_url.startswith("http://127.0.0.1:")
        assert model.base_url.endswith("/v1")
        messages, stats = build_messages(
            "You are a friendly assistant. Answer briefly.",
            turns,
            model.context_tokens - MAX_OUTPUT_TOKENS,
            counter,
            group=True,  # two user messages in a row, as a group channel sends them
            shortened_note="[shortened: {removed} tokens removed]",
        )
        assert stats.dropped_turns == 0
        answer = Answer()
        async with local_chat(model.base_url, model.model, MAX_OUTPUT_TOKENS) as chat:
            deltas = [delta async for delta in chat.stream(messages, answer)]

        assert len(deltas) > 1  # streamed, not delivered in one piece
        assert all(isinstance(d, str) for d in deltas)
        assert "".join(deltas) == answer.text
        assert answer.text.strip()
        assert 0 < answer.usage.completion_tokens <= MAX_OUTPUT_TOKENS
        assert answer.usage.prompt_tokens > 0
        health = f"{model.base_url.removesuffix('/v1')}/health"

    # Leaving the block stops the server: nothing listens on its port any more.
    async with aiohttp.ClientSession(trust_env=False) as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(health) as response:
                await response.read()


async def test_unloadable_model_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    skip_unless_local_model_installed()
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a gguf file")
    with pytest.raises(StartupError, match="exited with code"):
        async with start_local_model(model_path=bogus):
            pytest.fail("a server started from a file that is not a model")


async def test_missing_model_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local_model, "MODEL_PACKAGE", "no_such_model_package")
    with pytest.raises(StartupError) as caught:
        local_model.find_model_file()
    assert INSTALL_COMMAND in str(caught.value)


async def test_missing_server_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local_model, "SERVER_PACKAGE", "no_such_server_package")
    with pytest.raises(StartupError) as caught:
        async with start_local_model():
            pytest.fail("started without a server package")
    assert INSTALL_COMMAND in str(caught.value)
