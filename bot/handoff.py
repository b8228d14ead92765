"""Several instances on one database: each conversation answered by one instance
at a time, in stored order, and taken over when that instance dies.

The stored user turns are the queue. An instance that stores a turn (any of them:
Slack HTTP replicas behind a load balancer, Socket Mode connections, a redelivery)
starts a *pump* for its conversation. The pump reads the conversation's waiting
turns, lowest stored id first, and before each answer takes (or keeps) the
conversation's lease (``Coordination.take_lease``: one conditional UPSERT, so one
instance wins; taken again each time so that an instance that merely looked dead
for a moment stops after at most the answer in flight). The holder reads the next
turn from the database after each answer, so turns that other instances stored
meanwhile are answered in their place. When none is left it releases the lease and
looks once more: a turn stored by an instance that found the lease still held was
committed before that instance tried, so this last look sees it (or that instance
got the lease). An instance that loses the race simply leaves the turn: the
holder's next read finds it. No connection is held per waiting conversation, and
no wake-up message (LISTEN/NOTIFY) is needed.

Failover: a lease counts only while its holder's heartbeat (bot/instances.py) is
younger than ``stale_s``. Every ``sweep_s`` each instance asks for conversations
with waiting turns that no live instance holds (``Coordination.orphaned``) and
pumps them; it answers through ``Adapter.sink_for`` and the stored reply target,
as restart recovery does. A dead holder's conversations are thus answered within
``failover_s`` (= stale_s + sweep_s + one heartbeat). The sweep also picks up a
conversation whose storing instance died before it took the lease.

Storage failures (an outage, a statement timeout): a pump keeps its lease and
tries again until the database answers, so no conversation is left held by a live
instance that no longer pumps it; it first stores the end of an answer the core
could not, so that turn is not answered again. For ``stale_s`` after this instance
last saw the database fail it takes only leases nobody holds: no heartbeat could
be written meanwhile, so every holder looks dead at first.

The pump runs as a job in the core's lane for its conversation, so shutdown's
grace period and cancellation (``Core.close``) cover it like any answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .coordination import Coordination
from .failure_log import FailureLog
from .instances import HEARTBEAT_S
from .recovery import LOOKBACK_S, MAX_LOGGED, rebuild_message
from .shared_limit import SharedLimiter
from .shutdown import in_background
from .storage_guard import STORE_FAILURES
from .store import Unanswered
from .types import IncomingMessage, ReplySink

if TYPE_CHECKING:
    from .adapter import Adapter
    from .config import LimitsConfig
    from .core import Core

log = logging.getLogger(__name__)

STALE_SHARE = 0.6  # of failover_s: a holder silent this long is taken as dead
SWEEP_SHARE = 1 / 6  # of failover_s: how often orphaned conversations are looked for
WAITING_BATCH = 8  # waiting turns read at a time (the first not yet tried is answered)
ORPHANS_PER_SWEEP = 200  # conversations one sweep takes up; the rest at the next
MAX_HELD_SINKS = 10_000  # sinks of messages that arrived here, kept until answered
# Turns stored longer ago than this are not answered live even with recovery off:
# a shared queue must keep going across instances (recovery.max_age_minutes = 0).
MIN_WINDOW_S = 300.0

# A pump that the database fails tries again after this, doubling up to the most.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
# How old a holder's heartbeat must be to take its lease, for stale_s after this
# instance last saw the database fail: nobody could beat during the outage, so
# every holder looks dead when it ends. Only leases nobody holds are taken then.
AFTER_OUTAGE_STALE_S = math.inf

Local = tuple[IncomingMessage, ReplySink]


@dataclass(slots=True)
class _Tries:
    """What one pump tried, kept across its rounds (and its storage failures)."""

    tried: set[int] = field(default_factory=set)  # turn ids, answered or left
    # Answered by the core, by turn id, until a read shows its end stored.
    answered: dict[int, tuple[str, str]] = field(default_factory=dict)


class _PumpFailures:
    """One FailureLog for every pump: an outage fails them all at once, and a line
    per pump and try would bury the log. "Working again" once none is failing, so
    one conversation that keeps failing does not make it flap."""

    def __init__(self) -> None:
        self._log = FailureLog(log, "handoff: answering stored messages failed")
        self._failing: set[str] = set()

    def failed(self, conv: str, exc: BaseException) -> None:
        self._failing.add(conv)
        self._log.failed(f"conversation {conv}: {exc}")

    def succeeded(self, conv: str) -> None:
        self._failing.discard(conv)
        if not self._failing:
            self._log.succeeded()

    def ended(self, conv: str) -> None:
        """The pump stopped (shutdown) without working again."""
        self._failing.discard(conv)


@dataclass(frozen=True, slots=True)
class HandoffSettings:
    """How fast a dead instance's conversations move, and how old a turn may be."""

    failover_s: float = 30.0  # instances.failover_s
    max_age_s: float = 15 * 60.0  # recovery.max_age_minutes

    @property
    def stale_s(self) -> float:
        """Heartbeat silence after which a lease holder is taken as dead."""
        return max(self.failover_s * STALE_SHARE, 3 * HEARTBEAT_S)

    @property
    def sweep_s(self) -> float:
        """How often orphaned conversations are looked for."""
        return self.failover_s * SWEEP_SHARE


class Handoff:
    """Pumps conversations whose lease this instance holds; sweeps up orphans."""

    def __init__(
        self,
        core: Core,
        coordination: Coordination,
        settings: HandoffSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._core = core
        self._coord = coordination
        self._settings = settings
        self._clock = clock
        self._adapters: dict[str, Adapter] = {}
        self._pumps: set[str] = set()  # conversations with a pump queued or running
        self._again: set[str] = set()  # ... that another arrival asked to look again
        self._held: dict[tuple[str, str], Local] = {}  # arrived here, not yet answered
        self._told_unserved: set[tuple[str, str]] = set()  # warned: no platform here
        # Both are tried again every few seconds while the database is down.
        self._pump_failures = _PumpFailures()
        self._sweep_failures = FailureLog(log, "handoff: sweep failed")
        self._failed_at = -math.inf  # time.monotonic() of the last storage failure seen

    def serve(self, adapters: Sequence[Adapter]) -> None:
        """The adapters whose ``sink_for`` answers turns stored elsewhere."""
        self._adapters = {adapter.name: adapter for adapter in adapters}

    def arrived(self, conv: str, local: Local | None = None) -> None:
        """A turn of ``conv`` was stored (``local``: here, with its sink); pump it.

        Synchronous: whether a pump runs and whether it must look again is decided
        without a pause in between (see ``_pump``'s last look)."""
        if local is not None:
            if len(self._held) >= MAX_HELD_SINKS:  # the oldest is rebuilt from storage
                self._held.pop(next(iter(self._held)))
            self._held[(conv, local[0].message_id)] = local
        if conv in self._pumps:
            self._again.add(conv)
            return
        self._pumps.add(conv)
        self._core.run_in_lane(conv, lambda: self._pump(conv))

    async def _pump(self, conv: str) -> None:
        """Hold ``conv`` and answer its waiting turns until none is left.

        A storage failure does not end the pump: it still holds the lease, and the
        sweep skips conversations a live instance holds, so nobody else would pick
        the conversation up. It tries again, with what it tried kept, until the
        database answers (or the core closes)."""
        tries = _Tries()
        delay = RETRY_FIRST_S
        try:
            while not self._core.closing:
                try:
                    done = await self._pump_round(conv, tries)
                except STORE_FAILURES as exc:
                    self._failed_at = time.monotonic()
                    self._pump_failures.failed(conv, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                self._pump_failures.succeeded(conv)
                if done:
                    return
                delay = RETRY_FIRST_S
        finally:
            self._pumps.discard(conv)
            self._again.discard(conv)
            self._pump_failures.ended(conv)

    async def _pump_round(self, conv: str, tries: _Tries) -> bool:
        """Answer while holding the lease, release it, look once more; True when
        done (nothing left, or a live instance holds ``conv``)."""
        self._again.discard(conv)
        while not self._core.closing and (item := await self._next(conv, tries)):
            # Taken (or kept) before every answer: if this instance looked dead
            # for a moment and another took the conversation, it stops here.
            if not await self._coord.take_lease(conv, self._holder_stale_s()):
                return True  # a live instance holds it: its next read finds our turn
            await self._answer(item, tries)
        await self._coord.release_lease(conv)
        # The last look, after releasing (module docstring).
        return await self._next(conv, tries) is None and conv not in self._again

    async def _next(self, conv: str, tries: _Tries) -> Unanswered | None:
        """The first waiting turn this pump has not tried. A turn that stays waiting
        after its try is not tried again by this pump: its platform is not running
        here, or the core could not store its end (``_settle`` does)."""
        waiting = await self._coord.waiting_turns(conv, self._since(), WAITING_BATCH)
        ids = {item.turn.id for item in waiting}
        tries.tried &= ids  # bounded by the batch
        await self._settle(tries, ids)
        return next((i for i in waiting if i.turn.id not in tries.tried), None)

    async def _answer(self, item: Unanswered, tries: _Tries) -> None:
        """Answer ``item``. Tried once the core starts on it, not before: a read that
        fails first leaves it to the pump's next round."""
        key = (item.conversation, item.turn.message_id or "")
        pending = await self._core.store.pending_turn(*key)
        local = self._held.pop(key, None) or self._rebuilt(item, key)
        tries.tried.add(item.turn.id)
        if local is None or pending is None:
            return  # no platform: logged by rebuild_message; a later sweep may answer it
        tries.answered[item.turn.id] = key
        await self._core.answer_pending(*local, pending)

    def _rebuilt(self, item: Unanswered, key: tuple[str, str]) -> Local | None:
        """``rebuild_message``, warning once per message: every sweep meets a turn
        whose platform no instance here runs, and a line each time would flood."""
        told = self._told_unserved
        local = rebuild_message(
            item, self._adapters, level=logging.DEBUG if key in told else logging.WARNING
        )
        if local is None:
            if len(told) >= MAX_HELD_SINKS:
                told.clear()
            told.add(key)
        return local

    async def _settle(self, tries: _Tries, waiting: set[int]) -> None:
        """Store the end of each answered turn still ``waiting``: the core could not
        (the database failed as it finished), yet the answer was shown or the user
        told it failed. Left waiting, it would be answered again, after the turns
        behind it. Costs nothing while the core's own writes work."""
        store = self._core.store
        for turn_id, key in list(tries.answered.items()):
            if turn_id in waiting:
                pending = await store.pending_turn(*key)
                if pending is not None and pending.answer is not None:
                    await store.mark_delivered(key[0], pending.answer.id)
                elif pending is not None:
                    await store.mark_done(*key)
            del tries.answered[turn_id]

    def _holder_stale_s(self) -> float:
        """Heartbeat age after which a lease holder is taken as dead, just now."""
        if time.monotonic() - self._failed_at < self._settings.stale_s:
            return AFTER_OUTAGE_STALE_S
        return self._settings.stale_s

    def _since(self) -> float:
        return self._clock() - max(self._settings.max_age_s, MIN_WINDOW_S)

    async def sweep(self) -> None:
        """Pump the conversations with waiting turns that no live instance holds."""
        since = self._since()
        stale_s = self._holder_stale_s()
        for conv in await self._coord.orphaned(since, stale_s, ORPHANS_PER_SWEEP):
            self.arrived(conv)

    async def _sweep_forever(self) -> None:
        await self._abandon_old()
        while not self._core.closing:
            try:
                await self.sweep()
            except STORE_FAILURES as exc:
                self._failed_at = time.monotonic()
                self._sweep_failures.failed(exc)
            else:
                self._sweep_failures.succeeded()
            await asyncio.sleep(self._settings.sweep_s)

    async def _abandon_old(self) -> None:
        """Mark done what is older than the age limit, as restart recovery does."""
        since = self._clock() - self._settings.max_age_s
        try:
            old = await self._core.store.abandon_unanswered(since - LOOKBACK_S, since, MAX_LOGGED)
        except STORE_FAILURES as exc:
            log.warning("handoff: could not mark old messages done: %s", exc)
            return
        if old:
            log.warning("handoff: %d unanswered messages are too old; not answering them", len(old))

    @contextlib.asynccontextmanager
    async def sweeping(self, adapters: Sequence[Adapter]) -> AsyncIterator[None]:
        """Answer through ``adapters`` and sweep in the background while the body runs."""
        self.serve(adapters)
        async with in_background(self._sweep_forever(), "handoff-sweep"):
            yield


async def announce(coordination: Coordination, settings: HandoffSettings, shared: bool) -> int:
    """Log which instance this is and how many are alive; that count."""
    alive = await coordination.alive_instances(settings.stale_s)
    how = (
        f"conversations are shared; a dead instance's move within {settings.failover_s:.0f} s"
        if shared
        else "conversations are not handed between instances (PostgreSQL only)"
    )
    log.info(
        "instance %s: %d instance(s) alive on this database; %s",
        coordination.instance_id,
        alive,
        how,
    )
    return alive


async def share_store(
    core: Core, settings: HandoffSettings, limits: LimitsConfig
) -> Handoff | None:
    """Log who this instance is; if its store is shared with other instances, make
    the core answer through a Handoff and count people in the store."""
    store = core.store
    if not isinstance(store, Coordination):
        return None
    shared = bool(getattr(store, "shared", False))
    await announce(store, settings, shared)
    if not shared:
        return None
    handoff = Handoff(core, store, settings)
    core.share(handoff, SharedLimiter(store, limits.user_messages_per_minute))
    return handoff
