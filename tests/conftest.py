"""Shared fixtures: the fake OpenAI server, the in-process fake model, cores wired to them."""

from __future__ import annotations

from fakes.fixtures import fake_openai, no_proxy_env, openai_client
from tests.store_support import database
from tests.support import core_factory, fake_model, memory_core, model_core, sqlite_store

__all__ = [
    "core_factory",
    "database",
    "fake_model",
    "fake_openai",
    "memory_core",
    "model_core",
    "no_proxy_env",
    "openai_client",
    "sqlite_store",
]
