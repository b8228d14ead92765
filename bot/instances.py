"""Which running bot answers which message, when several share one database.

Every store, once opened, is one *instance*: it has an id and refreshes a heartbeat
in the database every ``HEARTBEAT_S`` while it is open; a clean close removes it.
The dedupe row of each stored message names the instance that took it (its
*owner*). After a restart, ``bot.recovery`` answers messages nobody finished, and
a redelivery answers a message a crash cut off, but only after taking it over
with ``Store.take_over``: one conditional UPDATE that succeeds only if the owner
is this instance, is gone, or has not beaten for ``STALE_AFTER_S``. Its row count
says who won, so two instances starting at once, or a redelivery racing recovery,
answer a message once; and a live instance's answers in flight are never taken
from it.

Why heartbeats and not only process ids: a PostgreSQL backend serves instances on
several hosts, where a pid means nothing; a timestamp in a shared table and a
conditional UPDATE work the same in SQLite and PostgreSQL (there, the database's
own clock should stamp and judge heartbeats, so host clocks need not agree).

A process killed with SIGKILL would still look alive for up to ``STALE_AFTER_S``.
So an instance row also names its process (``process_identity``), and a store
that opens deletes the rows of processes that are gone from its own machine:
a restart after a crash takes over at once. That check is only made where it
cannot be wrong: same boot and same pid namespace (Linux ``/proc``), so two
containers with their own pids never judge each other; a reused pid only makes a
dead instance look alive, and then its heartbeat goes stale as usual.
Elsewhere (another host, no ``/proc``) the wait stays: ``bot.recovery`` holds the
cut-off messages' places in their conversations meanwhile, so nothing newer is
answered first. A live instance whose event loop stalls longer than
``STALE_AFTER_S`` could lose a message to another instance and both would answer
it; five missed beats is far beyond any stall the bot has.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

HEARTBEAT_S = 2.0  # how often an open store stamps its instance row
STALE_AFTER_S = 10.0  # an instance silent this long is taken as gone
# Instance rows silent this long are deleted when a store opens (they own nothing
# anyone could still take over sooner than this).
FORGET_AFTER_S = 24 * 3600.0
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_PID_NAMESPACE = Path("/proc/self/ns/pid")


def new_instance_id() -> str:
    """A random name for one open store: 64 bits, short because every stored
    message's dedupe row carries it."""
    return secrets.token_hex(8)


def process_identity() -> tuple[str | None, int]:
    """(where pids are comparable, this process's pid). The first is None where
    that cannot be told; such instances are judged by their heartbeat only."""
    try:
        boot = _BOOT_ID.read_text().strip()
        namespace = os.readlink(_PID_NAMESPACE)
    except OSError:
        return None, os.getpid()
    return f"{boot}/{namespace}", os.getpid()


def process_gone(pid: int) -> bool:
    """Whether no process has this pid (in this pid namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False
