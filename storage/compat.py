"""The one place that touches aiosqlite's internals.

``SqliteStore`` runs a whole function (a transaction, a checkpoint, a prune) on
aiosqlite's worker thread in one trip, with the worker's ``sqlite3.Connection`` as
its first argument. aiosqlite has no public call for that: its public methods each
run one statement per trip. So this module uses ``Connection._execute`` (queue a
function on the worker thread) and ``Connection._conn`` (the worker's connection).

Written against aiosqlite :data:`WRITTEN_AGAINST` (the pin in requirements.txt).
``tests/test_compat.py`` checks that both still exist and behave as used here, and
names the installed version when they do not: after an upgrade, that file fails and
nothing else should.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import aiosqlite

DISTRIBUTION = "aiosqlite"
WRITTEN_AGAINST = "0.22.1"

_T = TypeVar("_T")


async def run_in_worker(db: aiosqlite.Connection, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(connection, *args)`` on ``db``'s worker thread, in one trip.

    If the caller is cancelled, ``fn`` still runs to its end: it is already queued.
    """
    return cast(_T, await db._execute(fn, db._conn, *args))  # type: ignore[no-untyped-call]
