"""The memory store's usage ledger: the SQL backends' rows, kept in a dict."""

from __future__ import annotations

from dataclasses import dataclass

from bot.usage import UsageQuery, UsageRecord, UsageTotals

# workspace, day, person, conversation, model, estimated (storage/usage_sql.py's key)
_Key = tuple[str, str, str, str, str, bool]


@dataclass(slots=True)
class _Row:
    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0


class MemoryLedger:
    """Usage rows by key; each answer adds to its row."""

    def __init__(self) -> None:
        self._rows: dict[_Key, _Row] = {}

    def record(self, record: UsageRecord) -> None:
        row = self._rows.setdefault(record.key, _Row())
        row.answers += record.answers
        row.prompt_tokens += record.prompt_tokens
        row.completion_tokens += record.completion_tokens
        row.cost += record.cost
        row.unpriced += 0 if record.priced else record.answers

    def totals(self, query: UsageQuery) -> UsageTotals:
        return _sum([(key, row) for key, row in self._rows.items() if _picked(key, query)])

    def top(self, query: UsageQuery, limit: int) -> list[tuple[str, UsageTotals]]:
        people = {key[2] for key in self._rows if _picked(key, query)}
        ranked = [(person, self.totals(_for(query, person))) for person in sorted(people)]
        ranked.sort(key=lambda item: -item[1].tokens)  # stable: ties stay by person
        return ranked[:limit]


def _for(query: UsageQuery, person: str) -> UsageQuery:
    return UsageQuery(query.workspace, query.first_day, query.end_day, person, query.conversation)


def _picked(key: _Key, query: UsageQuery) -> bool:
    workspace, day, person, conversation, _model, _estimated = key
    return (
        workspace == query.workspace
        and query.first_day <= day < query.end_day
        and (query.person is None or person == query.person)
        and (query.conversation is None or conversation == query.conversation)
    )


def _sum(rows: list[tuple[_Key, _Row]]) -> UsageTotals:
    return UsageTotals(
        answers=sum(row.answers for _, row in rows),
        prompt_tokens=sum(row.prompt_tokens for _, row in rows),
        completion_tokens=sum(row.completion_tokens for _, row in rows),
        cost=sum(row.cost for _, row in rows),
        unpriced=sum(row.unpriced for _, row in rows),
        estimated=sum(row.answers for key, row in rows if key[5]),
    )
