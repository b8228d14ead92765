"""Restart recovery: answer what a crash or a shutdown left unanswered.

Neither Discord nor Slack replays a message to a new session, so a question whose
answer was cut off (SIGKILL, power loss, the shutdown grace period ran out) would
stay unanswered forever. Every user turn is stored with where its answer goes
(``IncomingMessage.reply_target``, a string only its adapter reads). Before the
adapters start, ``recovering`` lists the cut-off turns stored within
``recovery.max_age_minutes`` and holds their places; once they have started, it
hands each to ``Core.answer_stored`` with a sink its adapter rebuilt from the
stored target (``Adapter.sink_for``). The core then
answers it through its normal path: in its conversation's lane, with the history
up to that question, or by showing again an answer that was stored but not
delivered.

Decisions:

- Age is measured from when the message was stored (the dedupe row's time, the
  store's own clock), not the platform's timestamp, which another host stamps.
- Older cut-off messages are marked done and logged once (at most
  ``MAX_LOGGED``, looking back ``LOOKBACK_S``): answering a question hours later,
  out of the blue, confuses more than it helps, and marking them keeps them from
  being listed and logged again at every start. A redelivery of one is then a
  plain duplicate.
- A message is answered only after ``Store.take_over`` made this instance its
  owner, so two instances starting on one database, or a redelivery racing
  recovery, answer it once, and a live instance keeps its answers in flight
  (bot/instances.py). An owner killed on this machine is known gone at once; one
  that died elsewhere looks alive until its heartbeat goes stale, so its message
  is tried again after that. Its place in its conversation is held meanwhile,
  so a newer message there waits for it.
- Places before intake: each cut-off message's place in its conversation is held
  before any adapter takes messages (``recovering``), and it is answered once the
  adapters are up (its sink needs their client). A message that arrives meanwhile,
  even the first line of a console pipe, is answered after it, in order.
- A redelivery (``Core.handle``) that finds its message held by an instance that
  looks alive drops it at once instead of waiting: two live instances that both
  receive every Discord message must not stall each other. If that owner was in
  fact dead, recovery answers the message once its heartbeat is stale.
- A turn whose platform is not running now, or whose target its adapter cannot
  read (stored by a version before targets existed), is logged and left alone:
  a later start within the age limit may still answer it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .instances import HEARTBEAT_S, STALE_AFTER_S
from .lanes import Slot
from .shutdown import in_background
from .storage_guard import STORE_FAILURES
from .store import Unanswered
from .types import IncomingMessage, ReplySink

if TYPE_CHECKING:
    from .adapter import Adapter
    from .core import Core

log = logging.getLogger(__name__)

MAX_RECOVERED = 500  # cut-off messages answered per start; a bound on the work queued
MAX_LOGGED = 1000  # older ones marked done per start (the rest at the next)
LOOKBACK_S = 7 * 24 * 3600.0  # as long as dedupe rows are kept (storage SEEN_RETENTION_S)
LOGGED_IDS = 5  # message ids named in one log line
# One more try once an owner that was alive at start must have missed its beats.
RETRY_AFTER_S = (STALE_AFTER_S + HEARTBEAT_S,)


@dataclass(frozen=True, slots=True)
class Recovered:
    """What one recovery pass did."""

    queued: int  # answers queued (or stored answers queued to be shown again)
    skipped: int  # no adapter or no readable target, or another instance has it
    abandoned: int  # older than the age limit: marked done, not answered


@dataclass(frozen=True, slots=True)
class Held:
    """Cut-off messages whose places in their conversations are held, to answer."""

    places: list[tuple[Unanswered, Slot]]
    listed: int  # cut-off messages found within the age limit
    abandoned: int  # older ones, marked done


class Recovery:
    """Holds the cut-off messages' places before the adapters take messages, and
    answers them once the adapters are up (their sinks need their clients)."""

    def __init__(self, core: Core, max_age_minutes: int) -> None:
        self._core = core
        self._max_age_s = max_age_minutes * 60.0
        self._held = Held([], 0, 0)

    async def hold(self) -> None:
        """List and hold; a storage failure is one line and holds nothing."""
        try:
            self._held = await hold_cut_off(self._core, self._max_age_s)
        except STORE_FAILURES as exc:  # a full disk, say: the bot goes on
            log.error("recovery: storage failed (%s); cut-off messages stay unanswered", exc)

    @contextlib.asynccontextmanager
    async def answering(self, adapters: Sequence[Adapter]) -> AsyncIterator[None]:
        """Answer what is held, in the background while the body runs."""
        if self._max_age_s <= 0:  # recovery is off
            yield
            return
        held, self._held = self._held, Held([], 0, 0)
        answers = answer_held(self._core, held, adapters, retry_after=RETRY_AFTER_S)
        try:
            async with in_background(_quietly(answers), "recovery"):
                yield
        finally:
            self._give_back(held)  # what the task did not get to before it stopped

    def release(self) -> None:
        """Give back the places still held (the adapters never came up)."""
        held, self._held = self._held, Held([], 0, 0)
        self._give_back(held)

    def _give_back(self, held: Held) -> None:
        for item, place in held.places:
            if not place.ready.is_set():  # neither filled nor given back yet
                self._core.release_place(item.conversation, item.turn.message_id or "", place)


@contextlib.asynccontextmanager
async def recovering(core: Core, max_age_minutes: int) -> AsyncIterator[Recovery]:
    """Hold the cut-off messages' places now; ``Recovery.answering`` answers them."""
    recovery = Recovery(core, max_age_minutes)
    await recovery.hold()
    try:
        yield recovery
    finally:
        recovery.release()


async def _quietly(work: Awaitable[Recovered]) -> None:
    try:
        await work
    except STORE_FAILURES as exc:  # a full disk, say: one line, and the bot goes on
        log.error("recovery: storage failed (%s); cut-off messages stay unanswered", exc)
    except Exception:  # anything else must not stop the bot either
        log.exception("recovery: failed; cut-off messages stay unanswered")


async def recover(
    core: Core,
    adapters: Sequence[Adapter],
    max_age_s: float,
    *,
    clock: Callable[[], float] = time.time,
    retry_after: Sequence[float] = RETRY_AFTER_S,
) -> Recovered:
    """Answer the cut-off messages younger than ``max_age_s``; mark older ones done."""
    if max_age_s <= 0:
        return Recovered(0, 0, 0)
    held = await hold_cut_off(core, max_age_s, clock=clock)
    return await answer_held(core, held, adapters, retry_after=retry_after)


async def hold_cut_off(
    core: Core, max_age_s: float, *, clock: Callable[[], float] = time.time
) -> Held:
    """Hold the place of each cut-off message younger than ``max_age_s`` in its
    conversation, in the order they were stored; mark older ones done."""
    if max_age_s <= 0:
        return Held([], 0, 0)
    store = core.store
    since = clock() - max_age_s
    abandoned = await store.abandon_unanswered(since - LOOKBACK_S, since, MAX_LOGGED)
    if abandoned:
        log.warning(
            "recovery: %d unanswered messages are older than %.0f minutes; not answering them: %s",
            len(abandoned),
            max_age_s / 60,
            _some(f"{mid} in {conv}" for conv, mid in abandoned),
        )
    items = await store.unanswered(since, MAX_RECOVERED)
    places = []
    for item in items:
        place = core.hold_place(item.conversation, item.turn.message_id or "")
        if place is not None:
            places.append((item, place))
    return Held(places, len(items), len(abandoned))


async def answer_held(
    core: Core, held: Held, adapters: Sequence[Adapter], *, retry_after: Sequence[float]
) -> Recovered:
    """Answer each held message through its adapter's sink, in its held place."""
    platforms = {adapter.name: adapter for adapter in adapters}
    answers = []
    for item, place in held.places:
        rebuilt = rebuild_message(item, platforms)
        if rebuilt is None:
            core.release_place(item.conversation, item.turn.message_id or "", place)
            continue
        answers.append(core.answer_stored(*rebuilt, retry_after=retry_after, place=place))
    queued = sum(await asyncio.gather(*answers))
    done = Recovered(queued, held.listed - queued, held.abandoned)
    log.info(
        "recovery: done: %d cut-off messages queued to be answered, %d skipped, %d too old",
        done.queued,
        done.skipped,
        done.abandoned,
    )
    return done


def rebuild_message(
    item: Unanswered, platforms: Mapping[str, Adapter], *, level: int = logging.WARNING
) -> tuple[IncomingMessage, ReplySink] | None:
    """The message as its adapter once handed it in, and a sink to answer it; if it
    cannot be rebuilt, None and a line at ``level`` saying why."""
    turn, target = item.turn, item.origin.reply_target
    where = f"message {turn.message_id} in {item.conversation}"
    try:
        key = item.key
    except ValueError:
        log.log(level, "recovery: %s: not a conversation key; left alone", where)
        return None
    adapter = platforms.get(key.platform)
    if adapter is None:
        log.log(
            level, "recovery: %s: %s is not running; left for a later start", where, key.platform
        )
        return None
    sink = None if target is None else adapter.sink_for(target)
    if sink is None:
        log.log(level, "recovery: %s: no usable reply target stored; left alone", where)
        return None
    msg = IncomingMessage(
        key=key,
        message_id=turn.message_id or "",
        author_id=turn.author_id or "",
        author_name=turn.author_name or "",
        text=turn.content,
        sent_at=turn.created_at,
        addressed=True,
        is_dm=item.origin.is_dm,
        reply_target=target,
    )
    return msg, sink


def _some(ids: Iterable[str]) -> str:
    listed = list(ids)
    shown = ", ".join(listed[:LOGGED_IDS])
    return shown + (f" and {len(listed) - LOGGED_IDS} more" if len(listed) > LOGGED_IDS else "")
