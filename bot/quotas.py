"""Quotas: per person per day and per workspace per month, in tokens or cost.

They are judged from the usage ledger (bot/usage.py) before the model is called,
so they hold across restarts and across instances sharing a store. Days and months
are UTC, as the ledger's days are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from .errors import ConfigError
from .prices import parse_prices
from .usage import UsageQuery, UsageTotals, day_span, month_span

if TYPE_CHECKING:
    from .config import QuotasConfig, UsageConfig

Scope = Literal["person", "workspace"]  # person per day, workspace per month
Unit = Literal["tokens", "cost"]
COST_QUOTAS = ("person_daily_cost", "workspace_monthly_cost")


@dataclass(frozen=True, slots=True)
class Exceeded:
    """A quota that is used up: which, its limit, and when it starts over."""

    scope: Scope
    unit: Unit
    limit: float
    resets_at: float  # unix seconds

    @property
    def text_key(self) -> str:
        """The bot/texts.py key of the reply that names this limit."""
        return f"quota_{self.scope}_{self.unit}"


def any_quota(quotas: QuotasConfig) -> bool:
    return bool(
        quotas.person_daily_tokens
        or quotas.person_daily_cost
        or quotas.workspace_monthly_tokens
        or quotas.workspace_monthly_cost
    )


class TotalsSource(Protocol):
    """Where quota checks read usage (the store, with bot/usage_buffer.py's rows)."""

    async def usage_totals(self, query: UsageQuery, /) -> UsageTotals: ...


async def first_exceeded(
    ledger: TotalsSource, quotas: QuotasConfig, workspace: str, person: str, now: float
) -> Exceeded | None:
    """The first quota ``person`` in ``workspace`` has used up, or None (one query per
    scope that has a limit)."""
    if quotas.person_daily_tokens or quotas.person_daily_cost:
        first, end, resets = day_span(now)
        used = await ledger.usage_totals(UsageQuery(workspace, first, end, person=person))
        over = _over(used, quotas.person_daily_tokens, quotas.person_daily_cost)
        if over is not None:
            return Exceeded("person", over[0], over[1], resets)
    if quotas.workspace_monthly_tokens or quotas.workspace_monthly_cost:
        first, end, resets = month_span(now)
        used = await ledger.usage_totals(UsageQuery(workspace, first, end))
        over = _over(used, quotas.workspace_monthly_tokens, quotas.workspace_monthly_cost)
        if over is not None:
            return Exceeded("workspace", over[0], over[1], resets)
    return None


def _over(used: UsageTotals, tokens: int, cost: float) -> tuple[Unit, float] | None:
    if tokens and used.tokens >= tokens:
        return "tokens", float(tokens)
    if cost and used.cost >= cost:
        return "cost", cost
    return None


def check_usage(usage: UsageConfig, quotas: QuotasConfig, model: str) -> None:
    """Config checks: the price table parses, and a cost quota has a price to count."""
    table = parse_prices(usage.prices)
    for name in COST_QUOTAS:
        if getattr(quotas, name) and table.get(model) is None:
            raise ConfigError(
                f"quotas.{name}",
                f"openai.model {model!r} has no price in usage.prices, so its cost "
                "cannot be counted; add a price or use a token quota",
            )
    if any_quota(quotas) and not usage.enabled:
        raise ConfigError("usage.enabled", "quotas need the usage ledger; turn it on")
