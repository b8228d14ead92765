"""The SQLite schema as an ordered list of migration steps.

``PRAGMA user_version`` records how many steps a database file has had; opening
it applies the missing ones in one transaction. Steps are append-only: never edit
a released step, add a new one.
"""

from __future__ import annotations

# Dedupe rows older than this are pruned; redeliveries arrive within minutes
# (Slack retries) or hours (a Discord resume), so a week is plenty.
SEEN_RETENTION_S = 7 * 24 * 3600.0

# v1: conversation history and per-conversation settings.
# ``anchor`` is the order position: a user turn's own id, an answer's reply_to,
# so an answer sorts right after the question it answers even when later
# questions were stored first. AUTOINCREMENT: an id is never reused after a
# reset, so a stale reply_to can never point at a newer turn.
_V1 = (
    """
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        author_id TEXT,
        author_name TEXT,
        message_id TEXT,
        created_at REAL NOT NULL,
        reply_to INTEGER,
        anchor INTEGER NOT NULL
    )
    """,
    "CREATE INDEX turns_by_position ON turns (conversation, anchor, id)",
    """
    CREATE TABLE conversation_settings (
        conversation TEXT PRIMARY KEY,
        system_prompt TEXT
    )
    """,
)

# v2: durable dedupe of platform message ids, kept apart from the turns so that
# a reset (which deletes turns) still recognises a redelivered event. Backfilled
# from the user turns a v1 database already holds.
_V2 = (
    """
    CREATE TABLE seen (
        conversation TEXT NOT NULL,
        message_id TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (conversation, message_id)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX seen_by_age ON seen (at)",
    """
    INSERT OR IGNORE INTO seen (conversation, message_id, at)
    SELECT conversation, message_id, CAST(strftime('%s', 'now') AS REAL)
    FROM turns WHERE role = 'user' AND message_id IS NOT NULL
    """,
)

# v3: whether a message's answer is finished even though no answer turn was stored
# (the model failed and the user was told). A stored user turn with neither an
# answer nor this mark was cut off by a crash, and is answered when redelivered.
# Rows from before v3 are taken as finished: nothing is answered twice.
# ``turns.delivered`` is 0 while an answer is stored but its last write has not
# landed yet; a crash in between shows the stored text again instead of asking the
# model twice.
_V3 = (
    "ALTER TABLE seen ADD COLUMN done INTEGER NOT NULL DEFAULT 0",
    "UPDATE seen SET done = 1",
    "ALTER TABLE turns ADD COLUMN delivered INTEGER NOT NULL DEFAULT 1",
)

# v4: a redelivered event looks its user turn up by (conversation, message_id): an
# index seek instead of a walk over the conversation's turns (80 ms at 200,000 turns,
# on the event loop). Answers have no message id, so the index leaves them out.
# ``created_at`` is indexed for ``storage.retention_days``, which deletes old turns
# in small batches: each batch finds its rows without a scan.
_V4 = (
    "CREATE INDEX turns_by_message ON turns (conversation, message_id) "
    "WHERE message_id IS NOT NULL",
    "CREATE INDEX turns_by_age ON turns (created_at)",
)

# v5: restart recovery (bot/recovery.py, bot/instances.py). A user turn keeps where
# its answer goes (the adapter's ``reply_target``, and whether it came from a DM);
# a dedupe row names the instance answering it (``owner``); ``instances`` holds each
# open store's heartbeat and process (``host``: where its ``pid`` can be checked).
# v4's ``turns_by_message`` finds a user turn by its message id for recovery too.
_V5 = (
    "ALTER TABLE turns ADD COLUMN reply_target TEXT",
    "ALTER TABLE turns ADD COLUMN is_dm INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE seen ADD COLUMN owner TEXT",
    """
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        heartbeat REAL NOT NULL,
        host TEXT,
        pid INTEGER
    )
    """,
)

# v6: the usage ledger (bot/usage.py, storage/usage_sql.py): one row per workspace,
# day, person, conversation, model and whether the tokens were our estimate.
_V6 = (
    """
    CREATE TABLE usage (
        workspace TEXT NOT NULL,
        day TEXT NOT NULL,
        person TEXT NOT NULL,
        conversation TEXT NOT NULL,
        model TEXT NOT NULL,
        estimated INTEGER NOT NULL,
        answers INTEGER NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cost REAL NOT NULL,
        unpriced INTEGER NOT NULL,
        PRIMARY KEY (workspace, day, person, conversation, model, estimated)
    ) WITHOUT ROWID
    """,
)

# v7: what was read from a message's attachments (bot/attachments.py): a file's
# text, or an image's downscaled JPEG. Kept apart from the turns so that the hot
# turn rows stay small; ``size`` is the image's bytes, for the per-conversation budget.
# A conversation's own model (``!model``) is a setting beside its system prompt.
_V7 = (
    "ALTER TABLE conversation_settings ADD COLUMN model TEXT",
    """
    CREATE TABLE media (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation TEXT NOT NULL,
        turn_id INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('text', 'image')),
        name TEXT NOT NULL,
        text TEXT NOT NULL,
        data BLOB NOT NULL,
        size INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        created_at REAL NOT NULL
    )
    """,
    "CREATE INDEX media_by_turn ON media (conversation, turn_id)",
    "CREATE INDEX media_by_age ON media (created_at)",
)

# v8: an answer that used tools keeps its tool calls and results (a JSON list of
# chat messages, bot/tool_use.py), so later prompts show them before it.
_V8 = ("ALTER TABLE turns ADD COLUMN tools TEXT",)

# v9: several instances on one database (bot/handoff.py, bot/shared_limit.py). A
# lease names the instance answering a conversation now; a person's count is their
# messages in the current minute. One instance alone writes a row now and then;
# the tables exist on every backend so the schema is the same everywhere.
# ``seen_by_conversation_age``: a conversation's recent messages, so finding its
# waiting turns reads the last minutes' rows, not its whole history.
_V9 = (
    "CREATE INDEX seen_by_conversation_age ON seen (conversation, at)",
    """
    CREATE TABLE leases (
        conversation TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        at REAL NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE person_counts (
        person TEXT PRIMARY KEY,
        minute INTEGER NOT NULL,
        count INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9)
SCHEMA_VERSION = len(MIGRATIONS)
