"""A fresh PostgreSQL schema per test, so tests never see each other's rows.

The server is the one at ``TEST_DATABASE_URL`` (default: 127.0.0.1:5432,
database ``test``, user ``postgres``). When it cannot be reached the test is
skipped with the reason, or fails when ``BOT_REQUIRE_POSTGRES=1`` (``.ci/run`` sets
it): there a missing server is a broken setup, not a reason to pass.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
CONNECT_TIMEOUT_S = 5.0


async def admin_connection() -> asyncpg.Connection:
    """A connection to the test server, or the test is skipped (failed when required)."""
    try:
        return await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL at {ADMIN_URL} is not reachable: {exc}"
        if os.environ.get("BOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (BOT_REQUIRE_POSTGRES=1)")
        pytest.skip(f"{reason}; set BOT_REQUIRE_POSTGRES=1 to fail instead")


def in_schema(url: str, schema: str) -> str:
    """``url`` with every connection's search_path set to ``schema`` (asyncpg
    passes unknown query parameters on as server settings)."""
    glue = "&" if "?" in url else "?"
    return f"{url}{glue}search_path={schema}"


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A new empty schema; yields a URL whose connections use it; drops it after."""
    schema = f"t_{secrets.token_hex(6)}"
    admin = await admin_connection()
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield in_schema(ADMIN_URL, schema)
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await admin.close()
