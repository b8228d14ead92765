"""Turn a storage backend's failure into :class:`bot.errors.StorageError`.

Backends fail in their own ways (``sqlite3.OperationalError`` for a locked file or
"disk I/O error", ``OSError`` for a full disk); the core turns them all into one
typed error where a message is taken in, so each adapter can refuse the message
(Slack: no ack, so Slack delivers it again) or tell the user (Discord, console).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from .errors import StorageError, StoreFailure

# What a store raises when the disk or the file refuses: a full disk (ENOSPC) or
# any other I/O error is an OSError; SQLite's own errors derive from sqlite3.Error;
# other backends (PostgreSQL) translate their driver's errors into StoreFailure.
STORE_FAILURES: tuple[type[Exception], ...] = (sqlite3.Error, OSError, StoreFailure)


@contextlib.contextmanager
def storing() -> Iterator[None]:
    """Raise StorageError for a failed store call. Not logged here: the adapter that
    gets it logs one line (or prints it, in the console), so a failure is one line."""
    try:
        yield
    except STORE_FAILURES as exc:
        raise StorageError(str(exc) or type(exc).__name__) from exc
