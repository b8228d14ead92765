"""Which running bot answers which message, when several share one database.

Every store, once opened, is one *instance*: it has an id and refreshes a heartbeat
in the database every ``HEARTBEAT_S`` while it is open; a clean close removes it.
The dedupe row of each stored message names the instance that took it (its
*owner*). After a restart, ``bot.recovery`` answers messages nobody finished, but
only after taking them over with ``Store.take_over``: one conditional UPDATE that
succeeds only if the owner is this instance, is gone, or has not beaten for
``STALE_AFTER_S``. Its row count says who won, so two instances starting at once,
or a redelivery racing recovery, answer a message once; and a live instance's
answers in flight are never taken from it.

Why heartbeats and not process ids: a PostgreSQL backend serves instances on
several hosts, where a pid means nothing; a timestamp in a shared table and a
conditional UPDATE work the same in SQLite and PostgreSQL (there, the database's
own clock should stamp and judge heartbeats, so host clocks need not agree).

The price is a wait: a process killed with SIGKILL still looks alive for up to
``STALE_AFTER_S``, so a restart right after a crash answers its cut-off messages
that much later (``bot.recovery`` holds their places in their conversations
meanwhile, so nothing newer is answered first). A live instance whose event loop
stalls longer than that could lose a message to another instance and both would
answer it; five missed beats is far beyond any stall the bot has.
"""

from __future__ import annotations

import secrets

HEARTBEAT_S = 2.0  # how often an open store stamps its instance row
STALE_AFTER_S = 10.0  # an instance silent this long is taken as gone
# Instance rows silent this long are deleted when a store opens (they own nothing
# anyone could still take over sooner than this).
FORGET_AFTER_S = 24 * 3600.0


def new_instance_id() -> str:
    """A random name for one open store: 64 bits, short because every stored
    message's dedupe row carries it."""
    return secrets.token_hex(8)
