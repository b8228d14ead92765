"""Shared fixtures: the fake OpenAI server, the in-process fake model, cores wired to them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.fixtures import fake_openai, no_proxy_env, openai_client
from tests.loopback_guard import loopback_only
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


@pytest.fixture(autouse=True, scope="session")
def traffic_stays_on_loopback() -> Iterator[None]:
    """No test of this process connects anywhere but this machine."""
    with loopback_only():
        yield
