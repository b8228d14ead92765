"""One clear line for a storage URL that cannot be used, instead of a traceback.

``describe`` turns what opening an SQLite file raised (a directory, a damaged
file, a folder that cannot be created or written) into a
:class:`~bot.errors.ConfigError` naming ``storage.url``. ``probe`` finds the
same problems without creating anything, for ``python -m bot check``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from pathlib import Path

from bot.errors import ConfigError

CONFIG_KEY = "storage.url"
MEMORY_PATH = ":memory:"
_EXAMPLE = "e.g. sqlite:///data/bot.db"
# Less free space than this, and a failure to open is put down to a full disk: SQLite
# then fails on its first page or its WAL index, often as a plain "disk I/O error".
MIN_FREE_BYTES = 1 << 20


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
