"""Storage backends for :class:`bot.store.Store`, picked by ``storage.url``."""

from __future__ import annotations

from bot.errors import ConfigError
from bot.redact import redact_url
from bot.store import Store

from .memory import MemoryStore
from .problems import check_postgres_url, probe
from .sqlite import SqliteStore
from .turn_cache import MAX_BYTES

CONFIG_KEY = "storage.url"
SUPPORTED_URLS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite:///:memory:, memory://, "
    "postgresql://host:5432/database"
)
POSTGRES_SCHEMES = ("postgresql", "postgres")
DEFAULT_POOL_SIZE = 10

__all__ = ["MemoryStore", "SqliteStore", "check_url", "open_store"]


def open_store(
    url: str,
    *,
    retention_days: float = 0.0,
    cache_bytes: int = MAX_BYTES,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> Store:
    """Build the backend named by ``url``; the caller then awaits ``store.open()``.

    ``sqlite:///data/bot.db`` is relative to the working directory,
    ``sqlite:////var/lib/bot.db`` absolute. Raises ConfigError for anything else.
    ``retention_days`` (0: forever) and ``cache_bytes`` (SQLite's turn cache) bound
    what is kept on disk and in memory. ``postgresql://`` (or ``postgres://``) opens
    a pool of at most ``pool_size`` connections.
    """
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if scheme == "memory" and sep and not rest:
        return MemoryStore(retention_days=retention_days)
    if scheme == "sqlite" and sep:
        path = _sqlite_path(url, rest)
        return SqliteStore(path, retention_days=retention_days, cache_bytes=cache_bytes)
    if scheme in POSTGRES_SCHEMES and sep and rest:
        check_postgres_url(url.strip())
        # Imported here: a SQLite or memory store never loads the PostgreSQL driver.
        from .postgres import PostgresStore

        return PostgresStore(url.strip(), retention_days=retention_days, pool_size=pool_size)
    raise ConfigError(
        CONFIG_KEY, f"unsupported URL {redact_url(url)!r}; use one of: {SUPPORTED_URLS}"
    )


def _sqlite_path(url: str, rest: str) -> str:
    # sqlite://<host>/<path> as in other URL schemes: the host part must be empty.
    if not rest.startswith("/") or len(rest) == 1:
        raise ConfigError(
            CONFIG_KEY,
            f"{redact_url(url)!r} has no file path; write sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite:///:memory:",
        )
    if "?" in rest:  # it would become part of the file's name
        raise ConfigError(
            CONFIG_KEY, f"{redact_url(url)!r}: a SQLite URL takes no ?options, only a path"
        )
    return rest[1:]


def check_url(url: str) -> None:
    """Raise the ConfigError that opening ``url`` would, without creating anything."""
    store = open_store(url)
    if isinstance(store, SqliteStore):
        probe(store.path)
