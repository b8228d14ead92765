"""Shared fixtures: the fake OpenAI server and a core wired to it."""

from __future__ import annotations

from tests.fakes.fixtures import fake_openai, no_proxy_env, openai_client
from tests.support import core_factory, memory_core, sqlite_store

__all__ = [
    "core_factory",
    "fake_openai",
    "memory_core",
    "no_proxy_env",
    "openai_client",
    "sqlite_store",
]
