"""The usage ledger's statements, for SQLite and PostgreSQL alike.

The table (storage/migrations.py v6, storage/postgres_sql.py v2) has one row per
(workspace, day, person, conversation, model, estimated): an answer adds to its
row (``INSERT ... ON CONFLICT DO UPDATE``, which both engines read the same way).
The key starts with the workspace and the day, so a quota's sum (a person's day,
a workspace's month) reads one short range of the key.
Placeholders are written ``?``; :func:`numbered` turns them into PostgreSQL's ``$n``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bot.usage import UsageQuery, UsageRecord, UsageTotals

_KEY = "workspace, day, person, conversation, model, estimated"


SQL_RECORD = f"""
    INSERT INTO usage ({_KEY}, answers, prompt_tokens, completion_tokens, cost, unpriced)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT ({_KEY}) DO UPDATE SET
        answers = usage.answers + excluded.answers,
        prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = usage.completion_tokens + excluded.completion_tokens,
        cost = usage.cost + excluded.cost,
        unpriced = usage.unpriced + excluded.unpriced
"""
_SUMS = """
    coalesce(sum(answers), 0), coalesce(sum(prompt_tokens), 0),
    coalesce(sum(completion_tokens), 0), coalesce(sum(cost), 0), coalesce(sum(unpriced), 0),
    coalesce(sum(CASE WHEN estimated THEN answers ELSE 0 END), 0)
"""
# Parameters: workspace, first day, end day, person twice, conversation twice.
_WHERE = """
    WHERE workspace = ? AND day >= ? AND day < ?
      AND (CAST(? AS TEXT) IS NULL OR person = ?)
      AND (CAST(? AS TEXT) IS NULL OR conversation = ?)
"""
SQL_TOTALS = f"SELECT {_SUMS} FROM usage {_WHERE}"
SQL_TOP = f"""
    SELECT person, {_SUMS} FROM usage {_WHERE}
    GROUP BY person
    ORDER BY sum(prompt_tokens) + sum(completion_tokens) DESC, person
    LIMIT ?
"""
# Forgetting a person: the answers to their turns, then their turns, in every
# conversation whose key starts with the workspace's prefix. Parameters: the
# person, the prefix twice.
_THEIRS = "role = 'user' AND author_id = ? AND substr(conversation, 1, length(CAST(? AS TEXT))) = ?"
SQL_FORGET_ANSWERS = f"""
    DELETE FROM turns WHERE role = 'assistant' AND reply_to IN (
        SELECT id FROM turns WHERE {_THEIRS})
"""
SQL_FORGET_TURNS = f"DELETE FROM turns WHERE {_THEIRS}"

_PLACEHOLDER = re.compile(r"\?")


def numbered(statement: str) -> str:
    """``statement`` with each ``?`` as PostgreSQL's ``$1``, ``$2``, ..."""
    count = iter(range(1, statement.count("?") + 1))
    return _PLACEHOLDER.sub(lambda _m: f"${next(count)}", statement)


def record_params(record: UsageRecord) -> tuple[object, ...]:
    """SQL_RECORD's parameters."""
    return (
        record.workspace,
        record.day,
        record.person,
        record.conversation,
        record.model,
        record.estimated,
        record.answers,
        record.prompt_tokens,
        record.completion_tokens,
        record.cost,
        0 if record.priced else record.answers,
    )


def query_params(query: UsageQuery) -> tuple[object, ...]:
    """SQL_TOTALS' parameters (SQL_TOP's, but its limit)."""
    return (
        query.workspace,
        query.first_day,
        query.end_day,
        query.person,
        query.person,
        query.conversation,
        query.conversation,
    )


def forget_params(prefix: str, person: str) -> tuple[object, ...]:
    """SQL_FORGET_ANSWERS' and SQL_FORGET_TURNS' parameters."""
    return (person, prefix, prefix)


def totals_of(row: Sequence[Any]) -> UsageTotals:
    """UsageTotals from the six sums (PostgreSQL's are Decimal for BIGINT columns)."""
    answers, prompt, completion, cost, unpriced, estimated = row
    return UsageTotals(
        answers=int(answers),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
        cost=float(cost),
        unpriced=int(unpriced),
        estimated=int(estimated),
    )
