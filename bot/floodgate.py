"""Bounds on what waits in a conversation, and notices sent beside the lanes.

:class:`WaitingCaps` counts each conversation's unanswered messages (the one being
answered included) in all and per person. A message over a cap is refused before it
is stored: it is never answered, and its sender is told once, not once per message.

:class:`Notices` sends those short texts straight to the conversation, so a notice
never waits in the lane behind answers; at most :data:`MAX_NOTICES_IN_FLIGHT` are
being sent at once, and any beyond that are dropped (and logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from .lanes import Job, Slot
from .ratelimit import NOTICE_WINDOW_S
from .split import split_text
from .types import ReplySink

log = logging.getLogger(__name__)

MAX_NOTICES_IN_FLIGHT = 64  # notices being sent at once, across all conversations
MAX_NOTICED_PEOPLE = 4096  # people remembered as told within the notice window
# People remembered as told, per busy conversation: beyond this many, a refused
# person is not told (a swarm of accounts must not grow memory without bound).
MAX_TOLD_PER_CONVERSATION = 1024


class Refusal(Enum):
    """Why a message was not let into its conversation's queue."""

    CONVERSATION_FULL = "conversation_full"
    PERSON_FULL = "person_full"


@dataclass(frozen=True, slots=True)
class Refused:
    """A refused message: why, and whether to tell its sender (once per episode)."""

    reason: Refusal
    notify: bool


@dataclass(slots=True)
class _Waiting:
    total: int = 0
    by_person: Counter[str] = field(default_factory=Counter)
    told: set[str] = field(default_factory=set)  # refused and told while still waiting


class WaitingCaps:
    """Caps on unanswered messages: per conversation in all, and per person both in
    a conversation and in its place (a channel: on Slack each top-level mention is a
    conversation of its own, and a flooder's answers there share one posting pace)."""

    def __init__(self, per_conversation: int, per_person: int) -> None:
        if per_conversation < 1 or per_person < 1:
            raise ValueError("waiting caps must be at least 1")
        self._per_conversation = per_conversation
        self._per_person = per_person
        self._convs: dict[str, _Waiting] = {}
        self._in_place: Counter[tuple[str, str]] = Counter()  # (place, person): waiting

    def __len__(self) -> int:
        """Conversations with messages waiting (the state of idle ones is dropped)."""
        return len(self._convs)

    def waiting(self, conv: str, person: str | None = None) -> int:
        """Unanswered messages in ``conv`` (of ``person`` only, when given)."""
        state = self._convs.get(conv)
        if state is None:
            return 0
        return state.total if person is None else state.by_person[person]

    def admit(self, conv: str, person: str, place: str | None = None) -> Refused | None:
        """Count one more waiting message, or refuse it (None: admitted). ``place``
        is the conversation's channel (the conversation itself when None)."""
        state = self._convs.setdefault(conv, _Waiting())
        mine = (place or conv, person)
        reason: Refusal | None = None
        if state.by_person[person] >= self._per_person or self._in_place[mine] >= self._per_person:
            reason = Refusal.PERSON_FULL
        elif state.total >= self._per_conversation:
            reason = Refusal.CONVERSATION_FULL
        if reason is None:
            state.total += 1
            state.by_person[person] += 1
            self._in_place[mine] += 1
            return None
        notify = person not in state.told and len(state.told) < MAX_TOLD_PER_CONVERSATION
        if notify:
            state.told.add(person)
        self._forget_if_idle(conv, state)
        return Refused(reason, notify)

    def release(self, conv: str, person: str, place: str | None = None) -> None:
        """One of ``person``'s messages in ``conv`` was answered (or given up)."""
        state = self._convs.get(conv)
        if state is None or state.by_person[person] <= 0:
            return
        state.total -= 1
        state.by_person[person] -= 1
        mine = (place or conv, person)
        self._in_place[mine] -= 1
        if self._in_place[mine] <= 0:
            del self._in_place[mine]
        if state.by_person[person] == 0:
            # Told once per episode: once all of this person's messages here are
            # answered, a refusal is news again. Someone refused because the whole
            # conversation was full is told again once it has emptied.
            del state.by_person[person]
            state.told.discard(person)
        self._forget_if_idle(conv, state)

    def _forget_if_idle(self, conv: str, state: _Waiting) -> None:
        if state.total == 0:
            del self._convs[conv]


class CountedSlot:
    """A lane slot whose message counts in the waiting caps until its job ends."""

    def __init__(
        self, slot: Slot, caps: WaitingCaps, conv: str, person: str, place: str | None = None
    ) -> None:
        self._slot = slot
        self._caps = caps
        self._conv = conv
        self._person = person
        self._place = place
        self._handed = False

    def fill(self, job: Job) -> None:
        """Give the slot its job; the place is freed when the job ends, however it ends."""
        caps, conv, person, place = self._caps, self._conv, self._person, self._place

        async def run() -> None:
            try:
                await job()
            finally:
                caps.release(conv, person, place)

        self._handed = True
        self._slot.fill(run)

    def cancel(self) -> None:
        """Give the place up (a duplicate, or storing it failed)."""
        self._handed = True
        self._slot.cancel()
        self._caps.release(self._conv, self._person, self._place)

    def settle(self) -> None:
        """Free the place if the slot was neither filled nor cancelled (an error)."""
        if not self._handed:
            self.cancel()


class NoticeWindow:
    """At most one notice per person per window, whichever limit refused them (a
    flooder hits the per-minute limit and the waiting cap in the same burst)."""

    def __init__(
        self,
        window_s: float = NOTICE_WINDOW_S,
        max_people: int = MAX_NOTICED_PEOPLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._max = max_people
        self._clock = clock
        self._told_at: dict[str, float] = {}  # oldest first

    def __len__(self) -> int:
        """People remembered as told."""
        return len(self._told_at)

    def allow(self, person: str) -> bool:
        """Whether ``person`` may be told now; if so, the window starts."""
        now = self._clock()
        told = self._told_at.get(person)
        if told is not None and now - told < self._window_s:
            return False
        self._told_at.pop(person, None)
        while self._told_at and (
            len(self._told_at) >= self._max
            or now - next(iter(self._told_at.values())) >= self._window_s
        ):
            del self._told_at[next(iter(self._told_at))]  # the oldest: its window has passed
        self._told_at[person] = now
        return True


class Notices:
    """Short texts sent at once, beside the lanes, in a bounded set of tasks."""

    def __init__(self, max_in_flight: int = MAX_NOTICES_IN_FLIGHT) -> None:
        self._max = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0  # notices not sent because too many were in flight

    def __len__(self) -> int:
        return len(self._tasks)

    def send(self, sink: ReplySink, text: str) -> None:
        """Send ``text`` in the background; dropped (and logged) past the bound."""
        if len(self._tasks) >= self._max:
            self.dropped += 1
            log.warning("%d notices already being sent; dropping one", len(self._tasks))
            return
        task = asyncio.create_task(_send(sink, text), name="notice")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every notice started so far was sent (or failed)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def cancel_all(self) -> None:
        """Stop the notices still being sent (shutdown)."""
        for task in self._tasks:
            task.cancel()


async def _send(sink: ReplySink, text: str) -> None:
    try:
        for part in split_text(text, sink.limits.max_len):
            await sink.send(part.render())
    except Exception:  # a notice is a courtesy: never let it fail anything else
        log.exception("could not send a notice to the conversation")
