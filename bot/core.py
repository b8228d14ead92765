"""The conversation engine: one message in, one answer out through its sink.

``handle`` accepts a message quickly (clean, dedupe, store the user turn,
reserve its place in the conversation's lane) and returns; the answer is then
produced in order per conversation and concurrently across conversations.
Before anything is stored, the per-person limit and the waiting caps
(``bot/floodgate.py``) may refuse a message: it is then not stored, not
deduped and never answered, and its sender gets one notice, sent beside the lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace

from . import thinking_note
from .accounting import Accounting, Admission
from .answer_cap import AnswerCap
from .attachments import AttachmentLimits
from .commands import FORGET_COMMAND, CommandEnv, command_text, forgets_conversation
from .config import PromptPolicy, ResetPolicy, VisionMode
from .context import build_messages
from .coordination import Arrivals, PersonLimit
from .delivery import DeliveryError, ReplyStream
from .errors import LLMError, PlatformRefused, ShuttingDown
from .events import EVENTS
from .floodgate import CountedSlot, Notices, NoticeWindow, Refusal, Refused, WaitingCaps
from .history_memo import MEMO_BYTES, HistoryMemo
from .indicator import TypingIndicator
from .jsonlog import answering
from .lanes import Job, Lanes, Slot
from .media_flow import MediaFlow, Taken, Vision
from .models import Catalog, ModelInfo, Tokenizers
from .pacing import Pacer
from .ratelimit import UserLimiter
from .sanitize import clean_text, parse_command
from .split import split_text
from .storage_guard import STORE_FAILURES, storing
from .store import Origin, Pending, Store
from .texts import Texts
from .tokens import TokenCounter
from .tool_loop import LoopLimits, ToolSource
from .tool_use import ToolUse
from .types import (
    Answer,
    ChatMessage,
    ChatModel,
    ConversationKey,
    IncomingMessage,
    ReplySink,
    Turn,
)

log = logging.getLogger(__name__)

HISTORY_TURNS = 200  # most turns loaded per answer; tokens trim further
CUT_NOTE_TIMEOUT_S = 2.0  # shutdown: most an answer cut by it spends on its closing note
CUT_WAIT_S = CUT_NOTE_TIMEOUT_S + 1.0  # close() waits this long for the cut answers' notes


async def _nothing() -> None:
    """The lane job of a turn the handoff answers: it only holds the place."""


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The part of the configuration the core itself needs."""

    system_prompt: str
    context_tokens: int
    max_output_tokens: int
    command_prefix: str = "!"
    system_prompt_policy: PromptPolicy = "admins"
    user_messages_per_minute: int = 0  # 0: no per-person limit
    reset_policy: ResetPolicy = "anyone"  # a DM: always the person
    max_waiting_per_conversation: int = 20  # unanswered messages in one conversation
    max_waiting_per_person: int = 3  # of them from one person
    history_memo_bytes: int = MEMO_BYTES  # the prompt memo's budget (history_memo.HistoryMemo)
    max_messages_per_answer: int = 10  # platform messages; past it the answer stops
    show_reasoning: bool = False  # a collapsed line of a reasoning model's thinking
    attachments: AttachmentLimits = field(default_factory=AttachmentLimits)
    vision: VisionMode = "auto"
    model_name: str = ""  # decides vision under "auto"
    models: Catalog | None = None  # what !model offers; None: only model_name
    model_policy: PromptPolicy = "admins"  # who may !model <name>

    @property
    def model_names(self) -> tuple[str, ...]:
        """The models ``!model`` offers; empty when there is no choice."""
        return tuple(m.name for m in self.models.models) if self.models else ()


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one answer asks, and of which model."""

    messages: list[ChatMessage]
    taken: Taken
    model: ModelInfo
    vision: Vision


class Core:
    """Keeps each conversation's history, asks the model, answers via the sink."""

    def __init__(
        self,
        *,
        store: Store,
        model: ChatModel,
        counter: TokenCounter,
        texts: Texts,
        settings: CoreSettings,
        pacer: Pacer | None = None,
        accounting: Accounting | None = None,
        tools: ToolSource | None = None,
        tool_limits: LoopLimits | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.counter = counter
        self.texts = texts
        self.settings = settings
        self.pacer = pacer or Pacer()
        self.accounting = accounting  # usage ledger and quotas (bot/accounting.py)
        self._lanes = Lanes()
        self._limiter = UserLimiter(settings.user_messages_per_minute)
        self._waiting = WaitingCaps(
            settings.max_waiting_per_conversation, settings.max_waiting_per_person
        )
        self._notices = Notices()
        self._told = NoticeWindow()  # one flood notice a minute per person, of any kind
        self._accepted: set[tuple[str, str]] = set()  # (conversation, message id) in a lane
        self._typing_calls: set[asyncio.Task[None]] = set()
        self._closing = False
        # History messages, by stored turn id.
        self._memo = HistoryMemo(max_bytes=settings.history_memo_bytes)
        self._media = MediaFlow(store, counter, texts, settings.attachments)
        self._tokenizers = Tokenizers(counter)
        self.catalog = settings.models or Catalog(
            [ModelInfo(settings.model_name, settings.context_tokens, settings.vision, "auto")]
        )
        self.tools = tools
        self.tool_use = ToolUse(tools, tool_limits or LoopLimits(), counter, texts)
        # Several instances on one database (share()): None while this one is alone.
        self._arrivals: Arrivals | None = None
        self._shared_limit: PersonLimit | None = None

    def share(self, arrivals: Arrivals, limit: PersonLimit) -> None:
        """Answer through ``arrivals`` and count people in ``limit`` (bot/handoff.py)."""
        self._arrivals, self._shared_limit = arrivals, limit

    @property
    def closing(self) -> bool:
        """Whether ``close`` began."""
        return self._closing

    def run_in_lane(self, conv: str, job: Job) -> None:
        """Queue ``job`` in ``conv``'s lane (the handoff's pump)."""
        self._lanes.reserve(conv).fill(job)

    async def answer_pending(self, msg: IncomingMessage, sink: ReplySink, pending: Pending) -> None:
        """Answer a stored turn now (the handoff's pump, already in its lane)."""
        await self._resume(msg.key.as_str(), msg, sink, pending)()

    @property
    def busy_conversations(self) -> int:
        """How many conversations have work queued or in flight."""
        return len(self._lanes)

    async def handle(self, msg: IncomingMessage, sink: ReplySink) -> None:
        """Accept one message; the answer follows asynchronously through ``sink``.

        Raises StorageError when the message could not be stored and ShuttingDown
        once ``close`` began: either way nothing was taken, so the adapter must not
        acknowledge the message (or must tell the user).
        """
        if self._closing:
            raise ShuttingDown(msg.message_id)
        with storing():
            await self._handle(msg, sink)

    async def _handle(self, msg: IncomingMessage, sink: ReplySink) -> None:
        conv = msg.key.as_str()
        if self.tool_use.answers_question(msg, self.settings.command_prefix):
            return  # the asker's !yes / !no to a tool waiting for approval
        if not msg.addressed and not (msg.in_thread and await self.store.has_turns(conv)):
            return
        text = clean_text(msg.text)
        command = parse_command(text, self.settings.command_prefix)
        person = f"{msg.key.platform}:{msg.key.workspace}:{msg.author_id}"
        # Commands and empty messages count too: a flood of them is still a flood.
        shared = self._shared_limit
        decision = self._limiter.admit(person) if shared is None else await shared.admit(person)
        if not decision.allowed:
            if decision.notify and self._told.allow(person):
                seconds = math.ceil(decision.wait_s)
                self._notices.send(sink, self.texts.get("user_rate_limited", seconds=seconds))
            return
        if command is not None:
            counted = await self._queue_command(command.name, command.arg, msg, sink, person)
        elif not text and not msg.attachments:  # an image alone is a question too
            counted = await self._reply_once(msg, sink, self.texts.get("empty_message"))
        else:
            counted = await self._queue_answer(conv, msg, sink, text, person)
        if not counted:  # a redelivery costs no allowance
            self._limiter.give_back(person)
            if shared is not None:
                await shared.give_back(person)

    async def _queue_answer(
        self, conv: str, msg: IncomingMessage, sink: ReplySink, text: str, person: str
    ) -> bool:
        """Store the message and queue its answer; False for a duplicate."""
        accepted = (conv, msg.message_id)
        # The same event twice at once (a retry): dropped here, unless the store orders
        # answers (several instances): then the retry's ack must wait until it is stored.
        if accepted in self._accepted and self._arrivals is None:
            EVENTS.dedupe_hits += 1
            return False
        place = self._enter(msg.key, person)
        if isinstance(place, Refused):
            return await self._turn_away(msg, person, sink, place)
        self._accepted.add(accepted)
        try:
            job = await self._accept(conv, msg, sink, text)
        except BaseException:
            self._accepted.discard(accepted)
            place.cancel()
            raise
        if job is None:  # seen and handled before
            self._accepted.discard(accepted)
            place.cancel()
            return False
        place.fill(job)
        return True

    def _enter(self, key: ConversationKey, person: str) -> CountedSlot | Refused:
        """A place in the lane, or why a waiting cap refuses the message."""
        conv, place = key.as_str(), key.place()
        refused = self._waiting.admit(conv, person, place)
        if refused is None:
            return CountedSlot(self._lanes.reserve(conv), self._waiting, conv, person, place)
        return refused

    async def _turn_away(
        self, msg: IncomingMessage, person: str, sink: ReplySink, refused: Refused
    ) -> bool:
        """A message a waiting cap refused: not stored and never answered (so not
        deduped either: a redelivery is judged afresh); its sender is told once, and
        at most once a minute together with the per-minute limit's notice. A
        redelivery of a message stored before is dropped without a word, as any
        duplicate (False: it costs no allowance)."""
        conv = msg.key.as_str()
        if await self.store.seen(conv, msg.message_id):
            log.info("duplicate message %s in %s ignored", msg.message_id, conv)
            EVENTS.dedupe_hits += 1
            return False
        log.info("conversation %s: message refused (%s)", conv, refused.reason.value)
        if refused.notify and self._told.allow(person):
            limit = self.settings.max_waiting_per_person
            text = "busy" if refused.reason is Refusal.CONVERSATION_FULL else "too_many_waiting"
            self._notices.send(sink, self.texts.get(text, count=limit))
        return True

    async def _accept(
        self, conv: str, msg: IncomingMessage, sink: ReplySink, text: str
    ) -> Job | None:
        """Store the user turn; the job that answers it, or None for a duplicate."""
        turn = Turn(
            role="user",
            content=text,
            tokens=self.counter.count(text),
            author_id=msg.author_id,
            author_name=clean_text(msg.author_name),  # a lone surrogate cannot be stored
            message_id=msg.message_id,
            created_at=msg.sent_at,
        )
        origin = Origin(msg.reply_target, msg.is_dm)
        turn_id = await self.store.add_user_turn(conv, turn, origin)
        if self._arrivals is not None:  # the handoff answers it, here or elsewhere
            if turn_id is None and await self.store.pending_turn(conv, msg.message_id) is None:
                return None
            self._arrivals.arrived(conv, (msg, sink))
            self._accepted.discard((conv, msg.message_id))  # stored: the store dedupes now
            return _nothing
        if turn_id is not None:
            return lambda: self._answer(msg, sink, turn_id)
        # Seen before: answered or told it failed, so drop it; or a crash cut its
        # answer off, and this redelivery is its chance to be answered once.
        pending = await self.store.pending_turn(conv, msg.message_id)
        if pending is None:
            log.info("duplicate message %s in %s ignored", msg.message_id, conv)
            EVENTS.dedupe_hits += 1
            return None
        if not await self.store.take_over(conv, msg.message_id):
            log.info("message %s in %s is another instance's to answer", msg.message_id, conv)
            return None
        log.info("message %s in %s was cut off by a restart; answering", msg.message_id, conv)
        return self._resume(conv, msg, sink, pending)

    def _resume(self, conv: str, msg: IncomingMessage, sink: ReplySink, pending: Pending) -> Job:
        """The job that finishes a cut-off answer: show a stored one again, or answer."""
        stored = pending.answer
        if stored is not None:
            return lambda: self._guarded(msg, self._show_again(conv, sink, stored))
        return lambda: self._answer(msg, sink, pending.user_turn_id)

    def hold_place(self, conv: str, message_id: str) -> Slot | None:
        """Hold a stored message's place in its conversation's lane (bot/recovery.py
        does so before any adapter takes messages): later messages there wait for
        it. None if it already has one (a redelivery got here first). Give the
        place to ``answer_stored`` or back with ``release_place``."""
        accepted = (conv, message_id)
        if self._closing or accepted in self._accepted:
            return None
        self._accepted.add(accepted)
        return self._lanes.reserve(conv)

    def release_place(self, conv: str, message_id: str, place: Slot) -> None:
        """Give back a place ``hold_place`` held, unanswered."""
        self._accepted.discard((conv, message_id))
        place.cancel()

    async def answer_stored(
        self,
        msg: IncomingMessage,
        sink: ReplySink,
        retry_after: Sequence[float] = (),
        place: Slot | None = None,
    ) -> bool:
        """Answer a stored message a restart cut off (bot/recovery.py); True if queued.

        It answers in ``place`` (from ``hold_place``), or takes its place in its
        conversation's lane at once, so messages that arrive later are answered
        after it. It is answered only once this instance takes it over
        (``store.take_over``), tried again after each of ``retry_after`` seconds
        while another instance holds it."""
        conv = msg.key.as_str()
        if place is None:
            place = self.hold_place(conv, msg.message_id)
            if place is None:
                return False
        job: Job | None = None
        try:
            for wait in (0.0, *retry_after):
                await asyncio.sleep(wait)
                if self._closing:
                    break
                if await self.store.take_over(conv, msg.message_id):
                    pending = await self.store.pending_turn(conv, msg.message_id)
                    job = None if pending is None else self._resume(conv, msg, sink, pending)
                    break
        finally:
            if job is None:
                self.release_place(conv, msg.message_id, place)
        if job is None:
            return False
        place.fill(job)
        return True

    async def run_command(self, name: str, arg: str, msg: IncomingMessage, sink: ReplySink) -> None:
        """Run a core command (native slash commands; not counted against any limit).

        Raises as ``handle`` does: StorageError, or ShuttingDown once ``close`` began."""
        if self._closing:
            raise ShuttingDown(msg.message_id)
        with storing():
            conv = msg.key.as_str()
            await self._command_in(self._lanes.reserve(conv), name, arg, msg, sink)

    async def _queue_command(
        self, name: str, arg: str, msg: IncomingMessage, sink: ReplySink, person: str
    ) -> bool:
        """A text command, counted in the conversation's waiting caps; False if seen."""
        place = self._enter(msg.key, person)
        if isinstance(place, Refused):
            return await self._turn_away(msg, person, sink, place)
        try:
            return await self._command_in(place, name, arg, msg, sink)
        finally:
            place.settle()

    async def _command_in(
        self, slot: Slot | CountedSlot, name: str, arg: str, msg: IncomingMessage, sink: ReplySink
    ) -> bool:
        conv = msg.key.as_str()
        arg = clean_text(arg)  # slash commands arrive here without handle()'s cleaning
        try:
            first = await self.store.claim(conv, msg.message_id)
        except BaseException:
            slot.cancel()
            raise
        if not first:
            slot.cancel()
            return False
        name = name.lower()
        if forgets_conversation(self._command_env(), name, msg):
            # Forget now, not when the lane gets here: messages that arrive after the
            # reset are stored at once and must survive it. An answer still being
            # written for an earlier message is then not stored (its question is gone).
            try:
                await self.store.reset(conv)
            except BaseException:
                slot.cancel()  # a reserved slot never filled would hold up the lane
                raise
        slot.fill(lambda: self._command(name, arg, msg, sink))
        return True

    def answer_approval(self, token: str, person: str, yes: bool) -> bool:
        """A button press on a tool's approval question (bot/tools/approval.py)."""
        return self.tool_use.approvals.press(token, person, yes)

    async def drain(self) -> None:
        """Wait until every accepted message has been answered and every notice sent."""
        await self._lanes.drain()
        await self._notices.drain()

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop accepting messages; let answers in flight finish within ``grace_s``."""
        self._closing = True
        try:
            await asyncio.wait_for(self._lanes.drain(), grace_s)
        except TimeoutError:
            log.warning("answers still running after %.1fs; cancelling them", grace_s)
            self._lanes.cancel_all()
            self._notices.cancel_all()
            # Each cut answer writes its closing note (bounded by CUT_NOTE_TIMEOUT_S)
            # while the adapters' connections are still open.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lanes.drain(), CUT_WAIT_S)
        if self.accounting is not None:
            await self.accounting.close()  # usage still in memory goes to the store

    # -- answering ---------------------------------------------------------

    async def _answer(self, msg: IncomingMessage, sink: ReplySink, turn_id: int) -> None:
        with answering(msg.key.as_str(), msg.message_id):  # tags JSON log lines
            await self._guarded(msg, self._try_answer(msg, sink, turn_id))

    async def _guarded(self, msg: IncomingMessage, work: Awaitable[bool]) -> None:
        """Run one answer; a failure the user was told about is marked done."""
        conv = msg.key.as_str()
        try:
            if not await work:
                await self.store.mark_done(conv, msg.message_id)
        except STORE_FAILURES as exc:  # one line, not a traceback per failed write
            log.error("storage failed after answering %s in %s: %s", msg.message_id, conv, exc)
        finally:
            self._accepted.discard((conv, msg.message_id))

    async def _try_answer(self, msg: IncomingMessage, sink: ReplySink, turn_id: int) -> bool:
        """Answer one message; False when it failed (and the user was told)."""
        conv = msg.key.as_str()
        typing = TypingIndicator(sink, self._typing_calls)
        try:
            return await self._stream_answer(conv, msg, sink, turn_id, typing)
        finally:
            typing.cancel()

    async def _stream_answer(
        self,
        conv: str,
        msg: IncomingMessage,
        sink: ReplySink,
        turn_id: int,
        typing: TypingIndicator,
    ) -> bool:
        plan = await self._plan(conv, msg, sink, turn_id)
        if plan is None:
            return False
        admission = await self._admission(msg, plan.model.name)
        if admission.refusal is not None:  # a quota is used up
            await self._send_quietly(sink, admission.refusal)
            return False
        answer = Answer(model=admission.model_name if self.catalog.choosable else "")
        label = self.texts.get("reasoning_label") if self.settings.show_reasoning else None
        stream = ReplyStream(
            sink,
            self.pacer,
            before_first_write=lambda: thinking_note.before_answer(typing, sink, answer, label),
        )
        model, tooling = self.tool_use.model_for(admission.model, msg, sink)
        deltas = self._media.stream(model, plan.messages, answer, plan.taken, plan.vision)
        answer_id: int | None = None
        cap = AnswerCap(sink.limits.max_len, self.settings.max_messages_per_answer)
        try:
            async with contextlib.aclosing(deltas):  # leaving early closes the HTTP stream
                async for delta in deltas:
                    await stream.push(cap.take(delta))
                    if cap.full:
                        break
            await stream.push(cap.rest())
            if self.accounting is not None:
                self.accounting.record(msg, admission, plan.messages, answer, stream.text)
            if not stream.text.strip():
                log.warning("the model returned an empty answer in %s", conv)
                await self._report(stream, sink, self.texts.get("error_empty_answer"))
                return False
            # Stored before its last (paced) write lands and marked delivered after:
            # a crash in between shows this text again rather than asking twice.
            # A capped answer is stored as shown, its token count its own.
            usage = Answer() if cap.full or tooling else answer
            exchange = tooling.exchange if tooling else []
            answer_id = await self._store_answer(conv, stream.text, usage, turn_id, exchange)
            await self._finish(stream, cap, plan.taken)
        except LLMError as exc:
            log.warning("model call for %s failed: %s", conv, exc)
            await self._report(stream, sink, self.texts.get(f"error_{exc.kind}"))
            return False
        except DeliveryError as exc:
            await self._undelivered(conv, sink, exc)
            return False
        except asyncio.CancelledError:  # shutdown after the grace period
            # Not marked done: the user turn stays unanswered for the next start.
            await stream.cut(self.texts.get("cut_by_restart"), CUT_NOTE_TIMEOUT_S)
            raise
        except STORE_FAILURES as exc:  # storing the answer: one line, the storage text
            log.error("storage failed while answering in %s: %s", conv, exc)
            await self._report(stream, sink, self.texts.get("error_storage_answer"))
            return False
        except Exception:
            log.exception("unexpected error while answering in %s", conv)
            await self._report(stream, sink, self.texts.get("error_internal"))
            return False
        if answer_id is not None:
            await self.store.mark_delivered(conv, answer_id)
        return True

    async def _admission(self, msg: IncomingMessage, name: str) -> Admission:
        """Which model answers ``msg``, or the quota's refusal (bot/accounting.py)."""
        if self.accounting is None:
            return Admission(self.model, name)
        return await self.accounting.admit(msg, self.model, name)

    async def _plan(
        self, conv: str, msg: IncomingMessage, sink: ReplySink, turn_id: int
    ) -> _Plan | None:
        """Which model answers, the attachments read and the prompt; None (the user
        told, if it is worth telling) when there is nothing to ask."""
        try:
            model = self.catalog.default
            if self.catalog.choosable:
                model = self.catalog.get(await self.store.get_model(conv))
            vision = self._media.vision_for(model.name, model.vision)
            taken = await self._media.take(conv, msg, sink, turn_id, vision)
            messages = await self._context(conv, msg, turn_id, model, vision)
        except STORE_FAILURES as exc:
            log.error("storage failed loading the history in %s: %s", conv, exc)
            await self._send_quietly(sink, self.texts.get("error_storage_read"))
            return None
        except Exception:
            log.exception("could not build the prompt for %s", conv)
            await self._send_quietly(sink, self.texts.get("error_internal"))
            return None
        if messages is None:
            log.info("message %s in %s was reset before its answer", msg.message_id, conv)
            return None
        if not taken.kept and msg.attachments and not clean_text(msg.text):
            await self._send_quietly(
                sink, "\n".join([*taken.notes, self.texts.get("nothing_readable")])
            )
            return None
        return _Plan(messages, taken, model, vision)

    async def _finish(self, stream: ReplyStream, cap: AnswerCap, taken: Taken) -> None:
        """Show the rest of the answer, with the cap's and the attachments' notes."""
        notes = list(taken.notes)
        if cap.full:
            limit = self.settings.max_messages_per_answer
            notes.insert(0, self.texts.get("answer_capped", limit=limit))
        if notes:
            await stream.finish_with_note("\n".join(notes))
        else:
            await stream.finish()

    async def _show_again(self, conv: str, sink: ReplySink, answer: Turn) -> bool:
        """Post an answer that was stored but not fully shown before a crash."""
        stream = ReplyStream(sink, self.pacer)
        try:
            await stream.push(answer.content)
            await stream.finish()
        except DeliveryError as exc:
            await self._undelivered(conv, sink, exc)
            return False
        await self.store.mark_delivered(conv, answer.id)
        return True

    async def _context(
        self, conv: str, msg: IncomingMessage, turn_id: int, model: ModelInfo, vision: Vision
    ) -> list[ChatMessage] | None:
        """The prompt for user turn ``turn_id``: system prompt + history trimmed by tokens.

        None when a reset forgot the turn before its answer began."""
        stored = await self.store.load_context(conv, turn_id, HISTORY_TURNS)
        if not stored.turns:
            return None
        folded = await self._media.fold(conv, stored.turns, stored.may_have_media)
        counter = await self._tokenizers.for_model(model.name)
        messages, _stats = build_messages(
            stored.system_prompt or self.settings.system_prompt,
            self._tokenizers.recount(folded.turns, counter),
            model.context_tokens - self.settings.max_output_tokens,  # the chosen model's
            counter,
            group=not msg.is_dm,
            shortened_note=self.texts.get("message_shortened"),
            memo=self._memo if counter is self.counter else None,  # one memo per counter
            key=conv,
        )
        return self._media.attach(messages, folded, vision)

    async def _store_answer(
        self, conv: str, text: str, answer: Answer, reply_to: int, exchange: list[ChatMessage]
    ) -> int | None:
        tokens = answer.usage.completion_tokens or self.counter.count(text)
        tools, tool_tokens = self.tool_use.stored(exchange)
        turn = Turn(
            role="assistant",
            content=text,
            tokens=tokens,
            created_at=time.time(),
            reply_to=reply_to,
            delivered=False,
            tools=tools,
        )
        if tools is not None:  # trimmed with its answer: the tokens count both
            turn = replace(turn, tokens=tokens + tool_tokens)
        return await self.store.add_assistant_turn(conv, turn)

    async def _report(self, stream: ReplyStream, sink: ReplySink, note: str) -> None:
        """Tell the user what went wrong, after any partial text already shown."""
        try:
            await stream.fail(note)
        except Exception:
            log.exception("could not show the error note; trying a plain message")
            await self._send_quietly(sink, note)

    async def _undelivered(self, conv: str, sink: ReplySink, exc: DeliveryError) -> None:
        """Log why an answer did not get through; say so where a notice still can."""
        log.warning("could not deliver the answer in %s: %s", conv, exc)
        if not exc.refused:  # refused: the notice would be refused too
            await self._send_quietly(sink, self.texts.get("error_delivery"))

    async def _send_quietly(self, sink: ReplySink, text: str) -> None:
        """Send a fixed text (split at the sink's limit); log instead of raising."""
        try:
            for part in split_text(text, sink.limits.max_len):
                await sink.send(part.render())
        except PlatformRefused as exc:  # one line that says what to fix, no traceback
            log.warning("could not send a message to the conversation: %s", exc)
        except Exception:
            log.exception("could not send a message to the conversation")

    # -- commands ----------------------------------------------------------

    async def _reply_once(self, msg: IncomingMessage, sink: ReplySink, text: str) -> bool:
        """Reply with a fixed text at once, once per message even if it is redelivered."""
        if not await self.store.claim(msg.key.as_str(), msg.message_id):
            return False
        self._notices.send(sink, text)
        return True

    async def _command(self, name: str, arg: str, msg: IncomingMessage, sink: ReplySink) -> None:
        await self._send_quietly(sink, await command_text(self._command_env(), name, arg, msg))
        if name == FORGET_COMMAND:  # the prompt memo may still hold the deleted text
            self._memo = HistoryMemo(max_bytes=self.settings.history_memo_bytes)

    def _command_env(self) -> CommandEnv:
        """What the commands (bot/commands.py) may use, from the core's settings."""
        settings = self.settings
        return CommandEnv(
            store=self.store,
            texts=self.texts,
            prefix=settings.command_prefix,
            default_prompt=settings.system_prompt,
            prompt_policy=settings.system_prompt_policy,
            reset_policy=settings.reset_policy,
            accounting=self.accounting,
            catalog=self.catalog,
            model_policy=settings.model_policy,
            tools=self.tools,
        )
