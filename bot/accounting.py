"""What answers cost, capped: the core's one hook into the usage ledger and quotas.

The core asks :meth:`Accounting.admit` before each model call (a quota may refuse
the answer or send it to ``fallback_model``) and hands each finished answer to
:meth:`Accounting.record`. The commands ``usage`` and ``forget`` read and change
the same ledger. A ledger that cannot be read or written never stops an answer:
the failure is logged and the answer goes ahead (fail open, as a store outage
would stop it anyway when its turn is stored).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .config import QuotasConfig, UsageConfig
from .events import EVENTS, Events
from .prices import PriceTable, parse_prices
from .quotas import Exceeded, any_quota, first_exceeded
from .storage_guard import STORE_FAILURES
from .texts import Texts
from .tokens import TokenCounter
from .types import Answer, ChatMessage, ChatModel, IncomingMessage, message_text
from .usage import (
    TOP_USERS,
    UsageLedger,
    UsageQuery,
    UsageRecord,
    UsageTotals,
    conversation_prefix,
    day_of,
    day_span,
    format_reset_time,
    month_span,
    workspace_of,
)
from .usage_buffer import UsageBuffer

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD_TOKENS = 4  # an estimate's per-message wrapping (role, separators)
FORGET_SELF = "me"


@dataclass(frozen=True, slots=True)
class Admission:
    """How one answer may go: with which model, or refused with this reply."""

    model: ChatModel
    model_name: str
    refusal: str | None = None


@dataclass(slots=True)
class Accounting:
    """The ledger, the prices and the quotas, for one core."""

    ledger: UsageLedger
    prices: PriceTable
    quotas: QuotasConfig
    texts: Texts
    counter: TokenCounter
    model_name: str
    fallback: ChatModel | None = None  # the quotas' fallback_model, when set
    clock: Callable[[], float] = time.time
    events: Events = field(default_factory=lambda: EVENTS)  # the metrics' counters
    recording: bool = True  # usage.enabled; off: no rows, no quotas, forget still works
    prices_as_of: str = ""  # usage.prices_as_of, shown to admins beside the costs
    _quotas_on: bool = field(init=False, default=False)
    _buffer: UsageBuffer = field(init=False)

    def __post_init__(self) -> None:
        self._quotas_on = self.recording and any_quota(self.quotas)
        self._buffer = UsageBuffer(self.ledger)

    async def admit(self, msg: IncomingMessage, model: ChatModel, name: str = "") -> Admission:
        """Check the quotas (none configured: no store query at all); ``name`` is the
        conversation's own model when it chose one (``!model``)."""
        name = name or self.model_name
        if not self._quotas_on:
            return Admission(model, name)
        try:
            exceeded = await first_exceeded(
                self._buffer, self.quotas, workspace_of(msg.key), msg.author_id, self.clock()
            )
        except STORE_FAILURES as exc:
            log.warning("quota check failed, answering anyway: %s", exc)
            return Admission(model, name)
        if exceeded is None:
            return Admission(model, name)
        self.events.quota_refusals[exceeded.scope] += 1
        fallback_name = self.quotas.fallback_model
        if self.fallback is not None and fallback_name:
            log.info(
                "quota %s reached in %s; using %s",
                exceeded.text_key,
                msg.key.as_str(),
                fallback_name,
            )
            return Admission(self.fallback, fallback_name)
        log.info("quota %s reached in %s; answer refused", exceeded.text_key, msg.key.as_str())
        return Admission(model, name, self._refusal(exceeded))

    def _refusal(self, exceeded: Exceeded) -> str:
        limit = _money(exceeded.limit) if exceeded.unit == "cost" else f"{exceeded.limit:,.0f}"
        return self.texts.get(
            exceeded.text_key, limit=limit, reset=format_reset_time(exceeded.resets_at)
        )

    def record(
        self,
        msg: IncomingMessage,
        admission: Admission,
        messages: Sequence[ChatMessage],
        answer: Answer,
        text: str,
    ) -> None:
        """Add one answer to the ledger: the server's token counts, or ours marked estimated."""
        if not self.recording:
            return
        prompt, completion = answer.usage.prompt_tokens, answer.usage.completion_tokens
        estimated = not (prompt or completion)
        if estimated:
            prompt = sum(
                self.counter.count(message_text(m)) + MESSAGE_OVERHEAD_TOKENS for m in messages
            )
            completion = self.counter.count(text)
        price = self.prices.get(admission.model_name)
        record = UsageRecord(
            day=day_of(self.clock()),
            workspace=workspace_of(msg.key),
            conversation=msg.key.as_str(),
            person=msg.author_id,
            model=admission.model_name,
            prompt_tokens=prompt,
            completion_tokens=completion,
            estimated=estimated,
            cost=0.0 if price is None else price.cost(prompt, completion),
            priced=price is not None,
        )
        self.events.tokens_in += prompt
        self.events.tokens_out += completion
        self._buffer.add(record)  # written within a second (bot/usage_buffer.py)

    async def close(self) -> None:
        """Write the usage still in memory (the core calls it last, before the store closes)."""
        await self._buffer.close()

    # -- commands -------------------------------------------------------------------

    async def usage_report(self, msg: IncomingMessage) -> str:
        """``!usage``: the person's own today and this month; admins see more."""
        if not self.recording:
            return self.texts.get("usage_off")
        await self._buffer.flush()
        now = self.clock()
        workspace = workspace_of(msg.key)
        day_first, day_end, _ = day_span(now)
        month_first, month_end, _ = month_span(now)
        today = UsageQuery(workspace, day_first, day_end, person=msg.author_id)
        month = UsageQuery(workspace, month_first, month_end, person=msg.author_id)
        lines = [
            await self._line("usage_own_today", today),
            await self._line("usage_own_month", month),
        ]
        if msg.author_is_admin:
            lines += await self._admin_lines(msg, UsageQuery(workspace, month_first, month_end))
        return "\n".join(lines)

    async def _admin_lines(self, msg: IncomingMessage, month: UsageQuery) -> list[str]:
        here = UsageQuery(
            month.workspace, month.first_day, month.end_day, conversation=msg.key.as_str()
        )
        lines = [
            await self._line("usage_conversation_month", here),
            await self._line("usage_workspace_month", month),
        ]
        if self.prices_as_of:
            lines.append(self.texts.get("usage_prices_as_of", date=self.prices_as_of))
        top = await self.ledger.top_users(month, TOP_USERS)
        if top:
            lines.append(self.texts.get("usage_top_users"))
            lines += [
                f"{rank}. {person}: {self._totals(t)}" for rank, (person, t) in enumerate(top, 1)
            ]
        return lines

    async def _line(self, key: str, query: UsageQuery) -> str:
        """Text ``key`` with the totals ``query`` picks."""
        return self.texts.get(key, totals=self._totals(await self.ledger.usage_totals(query)))

    def _totals(self, totals: UsageTotals) -> str:
        shown = self.texts.get(
            "usage_totals",
            tokens=f"{totals.tokens:,}",
            prompt=f"{totals.prompt_tokens:,}",
            completion=f"{totals.completion_tokens:,}",
            cost=_money(totals.cost),
        )
        if totals.unpriced:
            shown += " " + self.texts.get("usage_unpriced", count=totals.unpriced)
        if totals.estimated:
            shown += " " + self.texts.get("usage_estimated", count=totals.estimated)
        return shown

    async def forget(self, msg: IncomingMessage, arg: str) -> str:
        """``!forget me``, or an admin's ``!forget <user id>``."""
        who = arg.strip().lstrip("@")
        if not who:
            return self.texts.get("forget_usage")
        if who.lower() == FORGET_SELF:
            who = msg.author_id
        elif who != msg.author_id and not msg.author_is_admin:
            return self.texts.get("forget_denied")
        count = await self.ledger.forget_person(conversation_prefix(msg.key), who)
        # No content, and the person only as the platform's id: the log says that it happened.
        log.info(
            "forget: %d message(s) of %s deleted in %s (asked by %s)",
            count,
            who,
            workspace_of(msg.key),
            msg.author_id,
        )
        return self.texts.get("forget_done", count=count)


def _money(amount: float) -> str:
    return f"${amount:,.4f}" if amount < 1 else f"${amount:,.2f}"


def accounting_for(
    store: object,
    *,
    usage: UsageConfig,
    quotas: QuotasConfig,
    texts: Texts,
    counter: TokenCounter,
    model_name: str,
    fallback: ChatModel | None = None,
) -> Accounting | None:
    """The core's accounting on ``store``, or None if the store keeps no ledger."""
    if not isinstance(store, UsageLedger):
        return None
    return Accounting(
        ledger=store,
        prices=parse_prices(usage.prices),
        quotas=quotas,
        texts=texts,
        counter=counter,
        model_name=model_name,
        fallback=fallback if quotas.fallback_model else None,
        recording=usage.enabled,
        prices_as_of=usage.prices_as_of,
    )
