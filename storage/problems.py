"""One clear line for a storage URL that cannot be used, instead of a traceback.

``describe`` turns what opening an SQLite file raised (a directory, a damaged
file, a folder that cannot be created or written) into a
:class:`~bot.errors.ConfigError` naming ``storage.url``. ``probe`` finds the
same problems without creating anything, for ``python -m bot check``.
``check_postgres_url`` refuses a PostgreSQL URL the driver would misread.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path

from bot.errors import ConfigError
from bot.redact import has_unencoded_at, has_unencoded_userinfo, redact_url

CONFIG_KEY = "storage.url"
MEMORY_PATH = ":memory:"
_EXAMPLE = "e.g. sqlite:///data/bot.db"
# Less free space than this, and a failure to open is put down to a full disk: SQLite
# then fails on its first page or its WAL index, often as a plain "disk I/O error".
MIN_FREE_BYTES = 1 << 20
MAX_PORT = 65535
_PORT = re.compile(r"[0-9]{1,5}")
# Query parameters asyncpg also takes the database from (as libpq does); with none
# of them and no path it uses the user's name, often the server's maintenance one.
DATABASE_PARAMS = ("dbname", "database", "service")
_PG_EXAMPLE = "e.g. postgresql://host:5432/chatbridge"


def describe(path: str, exc: BaseException) -> ConfigError:
    """The error to show for ``exc``, raised while opening the SQLite file ``path``."""
    where = Path(path)
    if where.is_dir():
        return ConfigError(CONFIG_KEY, f"{path} is a directory; name a file in it ({_EXAMPLE})")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            reason = "a part of the path is a file, not a folder"
        folder = exc.filename or where.parent
        return ConfigError(CONFIG_KEY, f"cannot create the folder {folder} for {path}: {reason}")
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        return ConfigError(
            CONFIG_KEY, f"{path} is not an SQLite database, or it is damaged ({text})"
        )
    if "readonly" in text or "read-only" in text:
        return ConfigError(CONFIG_KEY, f"{path} cannot be written: {text}")
    if "disk is full" in text or _free_bytes(where.parent) < MIN_FREE_BYTES:
        return ConfigError(CONFIG_KEY, f"cannot use {path}: its disk is full ({text})")
    if "unable to open" in text:
        return ConfigError(
            CONFIG_KEY,
            f"cannot open {path}: {text} (the bot must be allowed to write in its folder)",
        )
    return ConfigError(CONFIG_KEY, f"cannot use {path}: {text}")


def probe(path: str) -> None:
    """Raise the error :func:`describe` would give, without creating the file."""
    if path == MEMORY_PATH:
        return
    where = Path(path)
    if where.is_dir():
        raise describe(path, IsADirectoryError(errno.EISDIR, "is a directory", path))
    if where.exists():
        _probe_file(path)
        return
    folder = _nearest_existing(where.parent)
    if not folder.is_dir():
        raise describe(path, NotADirectoryError(errno.ENOTDIR, "not a folder", str(folder)))
    try:  # the one sure test of "may a file be created here" (it is removed at once)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise describe(
            path, sqlite3.OperationalError(f"unable to open database file ({exc.strerror})")
        ) from None


def _probe_file(path: str) -> None:
    try:
        con = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            con.execute("PRAGMA schema_version").fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise describe(path, exc) from None
    if not os.access(path, os.W_OK):
        raise describe(path, sqlite3.OperationalError("attempt to write a readonly database"))


def _free_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write where ``folder`` is (or would be)."""
    try:
        stats = os.statvfs(_nearest_existing(folder))
    except OSError:
        return MIN_FREE_BYTES  # unknown: not called full
    if stats.f_blocks == 0:  # no size at all (/proc and the like): not a disk
        return MIN_FREE_BYTES
    return stats.f_bavail * stats.f_frsize


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_postgres_url(url: str) -> None:
    """Raise a ConfigError naming storage.url for a PostgreSQL URL the driver would
    misread: an unencoded character in the user or password, a bad port, no database."""
    shown = repr(redact_url(url))
    _check_userinfo(url, shown)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # an IPv6 address without its closing "]"
        raise ConfigError(CONFIG_KEY, f"{shown}: {exc}") from None
    _check_ports(parts.netloc, shown)
    if not parts.path.strip("/") and not _names_a_database(parts.query):
        raise ConfigError(
            CONFIG_KEY,
            f"{shown} names no database, so the bot's tables would go into the server's "
            f"default one; add its name after the host ({_PG_EXAMPLE})",
        )


def _check_userinfo(url: str, shown: str) -> None:
    if has_unencoded_userinfo(url):
        raise ConfigError(
            CONFIG_KEY,
            f"{shown}: its password holds a / ? or # that is not percent-encoded; "
            "write them as %2F, %3F and %23",
        )
    if has_unencoded_at(url):
        # The driver ends the userinfo at the first "@" and looks the rest of the
        # password up as a host name: part of the secret would reach the DNS server.
        raise ConfigError(
            CONFIG_KEY,
            f"{shown}: its user or password holds an @ that is not percent-encoded; "
            "write it as %40",
        )


def _check_ports(netloc: str, shown: str) -> None:
    # The driver hands a port past 65535 to the socket, which raises OverflowError
    # (a traceback in `check` and migrate-store, "Connection refused" at start).
    for port in _ports(netloc):
        if not _PORT.fullmatch(port) or not 1 <= int(port) <= MAX_PORT:
            raise ConfigError(
                CONFIG_KEY, f"{shown}: port {port!r} is not a number from 1 to {MAX_PORT}"
            )


def _ports(netloc: str) -> list[str]:
    """The ports written in ``netloc``: one per host of ``host1:5432,host2:5433``."""
    ports = []
    for host in netloc.rpartition("@")[2].split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host  # [IPv6]:port
        if ":" in port:
            ports.append(port.partition(":")[2])
    return [port for port in ports if port]  # "host:" is the default port


def _names_a_database(query: str) -> bool:
    names = urllib.parse.parse_qs(query)
    return any(names.get(param, [""])[-1] for param in DATABASE_PARAMS)
