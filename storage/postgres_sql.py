"""PostgreSQL schema (versioned migrations) and statements of the store.

The tables and columns mean what they mean in SQLite (storage/migrations.py):
``turns`` with its ``anchor`` order, ``seen`` (dedupe, ``done``, ``owner``),
``conversation_settings`` and ``instances``. The SQLite steps are a history of
changes to files already in use; a PostgreSQL database starts at the end of that
history, so its step 1 is the whole current schema. Steps are append-only.

Times are unix seconds from the store's clock, as in SQLite, so both backends
judge retention, dedupe age and heartbeats the same way.
"""

from __future__ import annotations

# The advisory lock every instance takes before reading the schema version: two
# instances starting at once migrate once, the second finds nothing to do. The
# value is arbitrary; it only has to be the same for every chatbridge process.
MIGRATION_LOCK = 0x63686174  # "chat"

SQL_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS chatbridge_schema (
        version INTEGER PRIMARY KEY,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
"""
SQL_LOCK = "SELECT pg_advisory_xact_lock($1)"
SQL_CURRENT_VERSION = "SELECT coalesce(max(version), 0) FROM chatbridge_schema"
SQL_RECORD_VERSION = "INSERT INTO chatbridge_schema (version) VALUES ($1)"
# At each start: a sequence behind its table's ids (rows copied in with their ids by
# a migrate-store that was stopped before its end) would fail every insert. Only a
# sequence strictly behind is moved (never back, under a running instance's feet).
SQL_CATCH_UP_SEQUENCES = (
    """
    SELECT setval('turns_id', m) FROM (SELECT max(id) AS m FROM turns) AS t
    WHERE (m, true) > (SELECT last_value, is_called FROM turns_id)
    """,
    """
    SELECT setval('media_id', m) FROM (SELECT max(id) AS m FROM media) AS t
    WHERE (m, true) > (SELECT last_value, is_called FROM media_id)
    """,
)

# v1: everything SQLite's v1..v5 hold. ``turns_id`` hands out ids that are never
# reused (a reset cannot make a stale reply_to point at a newer turn); a user
# turn takes its anchor from the same nextval in the statement that inserts it.
_V1 = (
    "CREATE SEQUENCE turns_id",
    """
    CREATE TABLE turns (
        id BIGINT PRIMARY KEY,
        conversation TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        author_id TEXT,
        author_name TEXT,
        message_id TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        reply_to BIGINT,
        anchor BIGINT NOT NULL,
        delivered BOOLEAN NOT NULL DEFAULT TRUE,
        reply_target TEXT,
        is_dm BOOLEAN NOT NULL DEFAULT FALSE
    )
    """,
    "ALTER SEQUENCE turns_id OWNED BY turns.id",
    "CREATE INDEX turns_by_position ON turns (conversation, anchor, id)",
    "CREATE INDEX turns_by_message ON turns (conversation, message_id) "
    "WHERE message_id IS NOT NULL",
    "CREATE INDEX turns_by_age ON turns (created_at)",
    """
    CREATE TABLE conversation_settings (
        conversation TEXT PRIMARY KEY,
        system_prompt TEXT
    )
    """,
    """
    CREATE TABLE seen (
        conversation TEXT NOT NULL,
        message_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        done BOOLEAN NOT NULL DEFAULT FALSE,
        owner TEXT,
        PRIMARY KEY (conversation, message_id)
    )
    """,
    "CREATE INDEX seen_by_age ON seen (at)",
    """
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        heartbeat DOUBLE PRECISION NOT NULL,
        host TEXT,
        pid INTEGER
    )
    """,
)

# v2: the usage ledger, as SQLite's v6.
_V2 = (
    """
    CREATE TABLE usage (
        workspace TEXT NOT NULL,
        day TEXT NOT NULL,
        person TEXT NOT NULL,
        conversation TEXT NOT NULL,
        model TEXT NOT NULL,
        estimated BOOLEAN NOT NULL,
        answers INTEGER NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cost DOUBLE PRECISION NOT NULL,
        unpriced INTEGER NOT NULL,
        PRIMARY KEY (workspace, day, person, conversation, model, estimated)
    )
    """,
)

# v3: attachments and a conversation's own model (SQLite's v7).
_V3 = (
    "ALTER TABLE conversation_settings ADD COLUMN model TEXT",
    "CREATE SEQUENCE media_id",
    """
    CREATE TABLE media (
        id BIGINT PRIMARY KEY DEFAULT nextval('media_id'),
        conversation TEXT NOT NULL,
        turn_id BIGINT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('text', 'image')),
        name TEXT NOT NULL,
        text TEXT NOT NULL,
        data BYTEA NOT NULL,
        size INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )
    """,
    "ALTER SEQUENCE media_id OWNED BY media.id",
    "CREATE INDEX media_by_turn ON media (conversation, turn_id)",
    "CREATE INDEX media_by_age ON media (created_at)",
)

# v4: an answer that used tools keeps its tool calls and results (a JSON list of
# chat messages, bot/tool_use.py), so later prompts show them before it.
_V4 = ("ALTER TABLE turns ADD COLUMN tools TEXT",)

# v5: several instances on one database (SQLite's v9): conversation leases
# (bot/handoff.py) and per-person counts (bot/shared_limit.py), and an index for a
# conversation's recent messages (the waiting turns are found among them).
_V5 = (
    "CREATE INDEX seen_by_conversation_age ON seen (conversation, at)",
    """
    CREATE TABLE leases (
        conversation TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE person_counts (
        person TEXT PRIMARY KEY,
        minute BIGINT NOT NULL,
        count INTEGER NOT NULL
    )
    """,
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION = len(MIGRATIONS)

TURN_COLUMNS = (
    "id, role, content, tokens, author_id, author_name, message_id, created_at, reply_to, tools"
)
_T_COLUMNS = ", ".join("t." + c.strip() for c in TURN_COLUMNS.split(","))
_A_COLUMNS = ", ".join("a." + c.strip() for c in TURN_COLUMNS.split(","))
_INSERT_COLUMNS = """
    id, conversation, role, content, tokens, author_id, author_name, message_id,
    created_at, reply_to, anchor, delivered, tools
"""

# A user turn in one statement, so one round trip and atomic: the dedupe row
# first (ON CONFLICT DO NOTHING waits for a racing insert of the same message and
# then claims nothing), and the turn only if the claim returned a row or the turn
# has no message id. $1 conversation, $2..$8 the turn, $9 delivered, $10 now,
# $11 owner, $12 reply_target, $13 is_dm.
SQL_ADD_USER = f"""
    WITH claimed AS (
        INSERT INTO seen (conversation, message_id, at, owner)
        SELECT $1::text, $7::text, $10::float8, $11::text WHERE $7::text IS NOT NULL
        ON CONFLICT DO NOTHING RETURNING 1
    ), new AS (
        SELECT nextval('turns_id') AS id
        WHERE $7::text IS NULL OR EXISTS (SELECT 1 FROM claimed)
    )
    INSERT INTO turns ({_INSERT_COLUMNS}, reply_target, is_dm)
    SELECT id, $1::text, $2::text, $3::text, $4::int, $5::text, $6::text, $7::text, $8::float8,
           NULL, id, $9::bool, NULL, $12::text, $13::bool
    FROM new
    RETURNING anchor, {TURN_COLUMNS}
"""
# An answer that replies to nothing sorts by arrival: its own id is its anchor.
SQL_ADD_ANSWER_ALONE = f"""
    INSERT INTO turns ({_INSERT_COLUMNS})
    SELECT n, $1::text, $2::text, $3::text, $4::int, $5::text, $6::text, $7::text, $8::float8,
           NULL, n, $9::bool, $10::text
    FROM nextval('turns_id') AS n
    RETURNING anchor, {TURN_COLUMNS}
"""
# An answer to user turn $10 ($11: its tool exchange): nothing if that turn is gone.
# FOR SHARE holds the question until this commits, so a reset deleting it waits (see SQL_RESET).
SQL_ADD_ANSWER = f"""
    WITH question AS (
        SELECT id FROM turns WHERE id = $10 AND conversation = $1 FOR SHARE
    )
    INSERT INTO turns ({_INSERT_COLUMNS})
    SELECT nextval('turns_id'),
           $1::text, $2::text, $3::text, $4::int, $5::text, $6::text, $7::text, $8::float8,
           id, id, $9::bool, $11::text
    FROM question
    RETURNING anchor, {TURN_COLUMNS}
"""
SQL_CLAIM = """
    INSERT INTO seen (conversation, message_id, at) VALUES ($1, $2, $3)
    ON CONFLICT DO NOTHING RETURNING 1
"""
# The prompt and the recent turns in one round trip: always at least one row
# (the prompt), turn columns NULL when there are none.
# Whether the conversation keeps attachments rides along, so an answer without any
# makes no second round trip for them (bot/media_flow.py).
SQL_LOAD_CONTEXT = f"""
    SELECT s.system_prompt,
        EXISTS (SELECT 1 FROM media AS m WHERE m.conversation = $1) AS has_media,
        {_T_COLUMNS}
    FROM (SELECT 1) AS one
    LEFT JOIN conversation_settings AS s ON s.conversation = $1
    LEFT JOIN LATERAL (
        SELECT {TURN_COLUMNS} FROM turns
        WHERE conversation = $1 AND anchor <= $2 AND delivered
        ORDER BY anchor DESC, id DESC LIMIT $3
    ) AS t ON TRUE
"""
SQL_PENDING = f"""
    SELECT t.id, {_A_COLUMNS}
    FROM turns AS t
    JOIN seen AS s ON s.conversation = t.conversation AND s.message_id = t.message_id
    LEFT JOIN turns AS a
      ON a.conversation = t.conversation AND a.anchor = t.id AND a.role = 'assistant'
    WHERE t.conversation = $1 AND t.message_id = $2 AND t.role = 'user' AND NOT s.done
      AND (a.id IS NULL OR NOT a.delivered)
    LIMIT 1
"""
SQL_MARK_DELIVERED = "UPDATE turns SET delivered = TRUE WHERE id = $1 AND conversation = $2"
SQL_MARK_DONE = "UPDATE seen SET done = TRUE WHERE conversation = $1 AND message_id = $2"
SQL_HAS_TURNS = "SELECT 1 FROM turns WHERE conversation = $1 LIMIT 1"
SQL_SEEN = "SELECT 1 FROM seen WHERE conversation = $1 AND message_id = $2"
# Run twice by reset, in one transaction: the first waits for answers in flight
# (their FOR SHARE on the question), the second, with a fresh snapshot, deletes
# what they inserted meanwhile.
SQL_RESET = "DELETE FROM turns WHERE conversation = $1"
SQL_GET_PROMPT = "SELECT system_prompt FROM conversation_settings WHERE conversation = $1"
SQL_SET_PROMPT = """
    INSERT INTO conversation_settings (conversation, system_prompt) VALUES ($1, $2)
    ON CONFLICT (conversation) DO UPDATE SET system_prompt = excluded.system_prompt
"""
SQL_PRUNE_SEEN = "DELETE FROM seen WHERE at < $1"
# -- attachments --
SQL_ADD_MEDIA = """
    INSERT INTO media (conversation, turn_id, kind, name, text, data, size, tokens, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
# Images past the budget, newest kept first (a running total over newest-first rows).
SQL_TRIM_IMAGES = """
    DELETE FROM media WHERE id IN (
        SELECT id FROM (
            SELECT id, sum(size) OVER (ORDER BY id DESC) AS total
            FROM media WHERE conversation = $1 AND kind = 'image'
        ) AS newest_first WHERE total > $2
    )
"""
SQL_MEDIA_FOR = """
    SELECT turn_id, kind, name, text, data, tokens FROM media
    WHERE conversation = $1 AND turn_id BETWEEN $2 AND $3 ORDER BY id
"""
SQL_RESET_MEDIA = "DELETE FROM media WHERE conversation = $1"
SQL_GET_MODEL = "SELECT model FROM conversation_settings WHERE conversation = $1"
SQL_SET_MODEL = """
    INSERT INTO conversation_settings (conversation, model) VALUES ($1, $2)
    ON CONFLICT (conversation) DO UPDATE SET model = excluded.model
"""
SQL_PRUNE_MEDIA = "DELETE FROM media WHERE created_at < $1"
# One batch of the retention prune: an index range on created_at, a few rows.
SQL_PRUNE_TURNS = """
    DELETE FROM turns WHERE id IN (SELECT id FROM turns WHERE created_at < $1 LIMIT $2)
"""

# -- restart recovery (bot/instances.py) --
SQL_BEAT = """
    INSERT INTO instances (id, heartbeat, host, pid) VALUES ($1, $2, $3, $4)
    ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat
"""
SQL_LOCAL_INSTANCES = "SELECT id, pid FROM instances WHERE host = $1 AND id <> $2"
SQL_UNREGISTER = "DELETE FROM instances WHERE id = $1"
SQL_FORGET_INSTANCES = "DELETE FROM instances WHERE heartbeat < $1"
# $1 this instance, $2 the oldest heartbeat that still counts as alive.
_TAKEABLE = """
    (seen.owner IS NULL OR seen.owner = $1 OR NOT EXISTS (
        SELECT 1 FROM instances AS i WHERE i.id = seen.owner AND i.heartbeat >= $2))
"""
SQL_TAKE_OVER = f"""
    UPDATE seen SET owner = $1
    WHERE conversation = $3 AND message_id = $4 AND NOT done AND {_TAKEABLE}
"""
# Cut-off user turns stored in [$a, $b): no answer, or one not delivered.
_CUT_OFF = """
    FROM seen AS s
    JOIN turns AS t
      ON t.conversation = s.conversation AND t.message_id = s.message_id AND t.role = 'user'
    LEFT JOIN turns AS a
      ON a.conversation = t.conversation AND a.anchor = t.id AND a.role = 'assistant'
    WHERE s.at >= {since} AND s.at < {before} AND NOT s.done
      AND (a.id IS NULL OR NOT a.delivered)
"""
SQL_UNANSWERED = f"""
    SELECT s.conversation, t.reply_target, t.is_dm, {_T_COLUMNS}
    {_CUT_OFF.format(since="$1", before="'Infinity'::float8")}
    ORDER BY s.at, t.id LIMIT $2
"""
# One conditional UPDATE over the oldest ``limit`` cut-off keys: an owner that is
# alive keeps its message. Returned in the order they were stored.
SQL_ABANDON = f"""
    WITH cut AS (
        SELECT s.conversation, s.message_id
        {_CUT_OFF.format(since="$3", before="$4")}
        ORDER BY s.at LIMIT $5
    ), marked AS (
        UPDATE seen SET done = TRUE FROM cut
        WHERE seen.conversation = cut.conversation AND seen.message_id = cut.message_id
          AND NOT seen.done AND {_TAKEABLE}
        RETURNING seen.conversation, seen.message_id, seen.at
    )
    SELECT conversation, message_id FROM marked ORDER BY at
"""

# -- several instances (bot/handoff.py, bot/shared_limit.py) --
# Take conversation $1's lease for instance $2 in one statement: inserted if there
# is none, kept if $2 holds it, taken if its holder's heartbeat is older than $4.
# ON CONFLICT locks the row and judges the WHERE on its newest version, so two
# instances racing for it cannot both win; the row count says who did.
SQL_TAKE_LEASE = """
    INSERT INTO leases (conversation, holder, at) VALUES ($1, $2, $3)
    ON CONFLICT (conversation) DO UPDATE SET holder = excluded.holder, at = excluded.at
    WHERE leases.holder = excluded.holder OR NOT EXISTS (
        SELECT 1 FROM instances AS i WHERE i.id = leases.holder AND i.heartbeat >= $4)
"""
SQL_RELEASE_LEASE = "DELETE FROM leases WHERE conversation = $1 AND holder = $2"
_WAITING = """
    FROM turns AS t
    JOIN seen AS s ON s.conversation = t.conversation AND s.message_id = t.message_id
    LEFT JOIN turns AS a
      ON a.conversation = t.conversation AND a.anchor = t.id AND a.role = 'assistant'
    WHERE t.role = 'user' AND t.anchor = t.id AND NOT s.done AND s.at >= {since}
      AND (a.id IS NULL OR NOT a.delivered)
"""
# Conversation $1's unanswered user turns stored since $2, in stored order. Its
# recent dedupe rows first (an index range), then their turns: a long history is
# not walked (the planner would start from the turns). A user turn's anchor is its
# id; saying so here would only make the planner misjudge how many rows match.
SQL_WAITING_TURNS = f"""
    WITH recent AS MATERIALIZED (
        SELECT message_id FROM seen WHERE conversation = $1 AND at >= $2 AND NOT done
    )
    SELECT t.conversation, t.reply_target, t.is_dm, {_T_COLUMNS}
    FROM recent AS r
    JOIN turns AS t ON t.conversation = $1 AND t.message_id = r.message_id
    LEFT JOIN turns AS a
      ON a.conversation = t.conversation AND a.anchor = t.id AND a.role = 'assistant'
    WHERE t.role = 'user' AND (a.id IS NULL OR NOT a.delivered)
    ORDER BY t.id LIMIT $3
"""
# Conversations with unanswered turns stored since $1 that no live instance
# ($2: the oldest heartbeat alive) holds: their holder died, or none took them.
SQL_ORPHANED = f"""
    SELECT DISTINCT t.conversation
    {_WAITING.format(since="$1")}
      AND NOT EXISTS (
        SELECT 1 FROM leases AS l JOIN instances AS i ON i.id = l.holder
        WHERE l.conversation = t.conversation AND i.heartbeat >= $2)
    LIMIT $3
"""
SQL_ALIVE = "SELECT count(*) FROM instances WHERE heartbeat >= $1"
# One more message for person $1 in minute $2; a newer minute starts over, an
# older one (a clock behind) counts in the newer.
SQL_COUNT_MESSAGE = """
    INSERT INTO person_counts (person, minute, count) VALUES ($1, $2, 1)
    ON CONFLICT (person) DO UPDATE SET
        count = CASE WHEN person_counts.minute >= excluded.minute
                     THEN person_counts.count + 1 ELSE 1 END,
        minute = GREATEST(person_counts.minute, excluded.minute)
    RETURNING count
"""
SQL_UNCOUNT_MESSAGE = """
    UPDATE person_counts SET count = count - 1 WHERE person = $1 AND minute = $2 AND count > 0
"""
SQL_PRUNE_COUNTS = "DELETE FROM person_counts WHERE minute < $1"
