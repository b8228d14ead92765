"""The usage ledger's vocabulary: what one answer cost, and how totals are asked for.

Usage is kept per day (UTC) and per (workspace, conversation, person, model,
estimated): each answer adds its tokens and cost to that one row, so a month of a
busy workspace is a few thousand rows, and a quota check sums a handful. Rows hold
no message text, so forgetting a person (``forget_person``) leaves them in place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .types import ConversationKey

TOP_USERS = 5  # how many heavy users the admin view of ``!usage`` lists
_UTC = dt.UTC


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one answer used, as added to its day's row."""

    day: str  # YYYY-MM-DD, UTC
    workspace: str  # "platform:workspace" (see workspace_of)
    conversation: str  # ConversationKey.as_str()
    person: str  # the platform's user id
    model: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool  # the server reported no usage: our own tokenizer counted
    cost: float  # USD; 0.0 when the model has no price
    priced: bool
    answers: int = 1  # more when the buffer (bot/usage_buffer.py) merged several

    @property
    def key(self) -> tuple[str, str, str, str, str, bool]:
        """The row it adds to."""
        return (
            self.workspace,
            self.day,
            self.person,
            self.conversation,
            self.model,
            self.estimated,
        )


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which rows to total: one workspace, days in [first_day, end_day)."""

    workspace: str
    first_day: str
    end_day: str
    person: str | None = None
    conversation: str | None = None

    def picks(self, record: UsageRecord) -> bool:
        """Whether ``record``'s row is among the rows this query totals."""
        return (
            record.workspace == self.workspace
            and self.first_day <= record.day < self.end_day
            and (self.person is None or record.person == self.person)
            and (self.conversation is None or record.conversation == self.conversation)
        )


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Sums over some rows; ``unpriced`` answers are counted in tokens only."""

    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0
    estimated: int = 0  # answers whose tokens we counted ourselves

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def plus(self, record: UsageRecord) -> UsageTotals:
        """These totals with ``record`` added."""
        return UsageTotals(
            answers=self.answers + record.answers,
            prompt_tokens=self.prompt_tokens + record.prompt_tokens,
            completion_tokens=self.completion_tokens + record.completion_tokens,
            cost=self.cost + record.cost,
            unpriced=self.unpriced + (0 if record.priced else record.answers),
            estimated=self.estimated + (record.answers if record.estimated else 0),
        )


@runtime_checkable
class UsageLedger(Protocol):
    """The store's usage rows and the person-wide forgetting (every backend has both)."""

    async def record_usage(self, records: Sequence[UsageRecord]) -> None:
        """Add each record to its day's row, all in one transaction."""

    async def usage_totals(self, query: UsageQuery) -> UsageTotals:
        """Sums over the rows ``query`` picks."""

    async def top_users(self, query: UsageQuery, limit: int) -> list[tuple[str, UsageTotals]]:
        """The persons with the most tokens among the rows ``query`` picks, most first."""

    async def forget_person(self, conversation_prefix: str, person: str) -> int:
        """Delete ``person``'s own turns (and the answers to them) in every
        conversation whose key starts with ``conversation_prefix``; how many of
        their messages went. Usage rows stay (they hold no text)."""


def workspace_of(key: ConversationKey) -> str:
    """The ledger's workspace name: the platform and its workspace (guild, team)."""
    return f"{key.platform}:{key.workspace}"


def conversation_prefix(key: ConversationKey) -> str:
    """What every ``as_str()`` of a conversation in ``key``'s workspace starts with."""
    return ConversationKey(key.platform, key.workspace, "").as_str().removesuffix("::")


def day_of(now: float) -> str:
    return dt.datetime.fromtimestamp(now, _UTC).date().isoformat()


def day_span(now: float) -> tuple[str, str, float]:
    """Today's [first_day, end_day) and when tomorrow begins (unix seconds)."""
    today = dt.datetime.fromtimestamp(now, _UTC).date()
    tomorrow = today + dt.timedelta(days=1)
    return today.isoformat(), tomorrow.isoformat(), _midnight(tomorrow)


def month_span(now: float) -> tuple[str, str, float]:
    """This month's [first_day, end_day) and when the next month begins."""
    today = dt.datetime.fromtimestamp(now, _UTC).date()
    first = today.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first.isoformat(), following.isoformat(), _midnight(following)


def _midnight(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=_UTC).timestamp()


def format_reset_time(at: float) -> str:
    """A reset moment as people read it, in UTC (the ledger's days are UTC days)."""
    return dt.datetime.fromtimestamp(at, _UTC).strftime("%Y-%m-%d %H:%M UTC")
