"""The conversation engine: one message in, one answer out through its sink.

``handle`` accepts a message quickly (clean, dedupe, store the user turn,
reserve its place in the conversation's lane) and returns; the answer is then
produced in order per conversation and concurrently across conversations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from .context import HistoryMemo, build_messages
from .delivery import DeliveryError, ReplyStream
from .errors import LLMError, ShuttingDown
from .indicator import TypingIndicator
from .lanes import Job, Lanes
from .pacing import Pacer
from .ratelimit import UserLimiter
from .sanitize import clean_text, parse_command
from .split import split_text
from .storage_guard import STORE_FAILURES, storing
from .store import Store
from .texts import Texts
from .tokens import TokenCounter
from .types import Answer, ChatMessage, ChatModel, IncomingMessage, ReplySink, Turn

log = logging.getLogger(__name__)

HISTORY_TURNS = 200  # most turns loaded per answer; tokens trim further
MAX_SYSTEM_PROMPT_CHARS = 4000
COMMANDS = ("reset", "system", "help")
CUT_NOTE_TIMEOUT_S = 2.0  # shutdown: most an answer cut by it spends on its closing note
CUT_WAIT_S = CUT_NOTE_TIMEOUT_S + 1.0  # close() waits this long for the cut answers' notes


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The part of the configuration the core itself needs."""

    system_prompt: str
    context_tokens: int
    max_output_tokens: int
    command_prefix: str = "!"
    system_prompt_policy: str = "admins"  # "anyone" | "admins" | "nobody"
    user_messages_per_minute: int = 0  # 0: no per-person limit


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
    ) -> None:
        self.store = store
        self.model = model
        self.counter = counter
        self.texts = texts
        self.settings = settings
        self.pacer = pacer or Pacer()
        self._lanes = Lanes()
        self._limiter = UserLimiter(settings.user_messages_per_minute)
        self._accepted: set[tuple[str, str]] = set()  # (conversation, message id) in a lane
        self._typing_calls: set[asyncio.Task[None]] = set()
        self._closing = False
        self._memo = HistoryMemo()  # history messages, by stored turn id

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
        if not msg.addressed and not (msg.in_thread and await self.store.has_turns(conv)):
            return
        text = clean_text(msg.text)
        command = parse_command(text, self.settings.command_prefix)
        if command is not None:
            await self._run_command(command.name, command.arg, msg, sink)
            return
        if not text:
            await self._reply_once(msg, sink, self.texts.get("empty_message"))
            return
        person = f"{msg.key.platform}:{msg.key.workspace}:{msg.author_id}"
        wait = self._limiter.take(person)
        if wait > 0:
            limited = self.texts.get("user_rate_limited", seconds=math.ceil(wait))
            await self._reply_once(msg, sink, limited)
            return
        accepted = (conv, msg.message_id)
        if accepted in self._accepted:  # the same event twice at once (a retry)
            self._limiter.give_back(person)
            return
        self._accepted.add(accepted)
        slot = self._lanes.reserve(conv)
        try:
            job = await self._accept(conv, msg, sink, text)
        except BaseException:
            self._accepted.discard(accepted)
            self._limiter.give_back(person)
            slot.cancel()
            raise
        if job is None:  # seen and handled before: a redelivery costs no allowance
            self._accepted.discard(accepted)
            self._limiter.give_back(person)
            slot.cancel()
            return
        slot.fill(job)

    async def _accept(
        self, conv: str, msg: IncomingMessage, sink: ReplySink, text: str
    ) -> Job | None:
        """Store the user turn; the job that answers it, or None for a duplicate."""
        turn = Turn(
            role="user",
            content=text,
            tokens=self.counter.count(text),
            author_id=msg.author_id,
            author_name=msg.author_name,
            message_id=msg.message_id,
            created_at=msg.sent_at,
        )
        turn_id = await self.store.add_user_turn(conv, turn)
        if turn_id is not None:
            return lambda: self._answer(msg, sink, turn_id)
        # Seen before: answered or told it failed, so drop it; or a crash cut its
        # answer off, and this redelivery is its chance to be answered once.
        pending = await self.store.pending_turn(conv, msg.message_id)
        if pending is None:
            log.info("duplicate message %s in %s ignored", msg.message_id, conv)
            return None
        log.info("message %s in %s was cut off by a restart; answering", msg.message_id, conv)
        stored = pending.answer
        if stored is not None:
            return lambda: self._guarded(msg, self._show_again(conv, sink, stored))
        return lambda: self._answer(msg, sink, pending.user_turn_id)

    async def run_command(self, name: str, arg: str, msg: IncomingMessage, sink: ReplySink) -> None:
        """Run a core command (also used for native slash commands); raises as ``handle``."""
        if self._closing:
            raise ShuttingDown(msg.message_id)
        with storing():
            await self._run_command(name, arg, msg, sink)

    async def _run_command(
        self, name: str, arg: str, msg: IncomingMessage, sink: ReplySink
    ) -> None:
        conv = msg.key.as_str()
        slot = self._lanes.reserve(conv)
        try:
            first = await self.store.claim(conv, msg.message_id)
        except BaseException:
            slot.cancel()
            raise
        if not first:
            slot.cancel()
            return
        name = name.lower()
        if name == "reset":
            # Forget now, not when the lane gets here: messages that arrive after the
            # reset are stored at once and must survive it. An answer still being
            # written for an earlier message is then not stored (its question is gone).
            try:
                await self.store.reset(conv)
            except BaseException:
                slot.cancel()  # a reserved slot never filled would hold up the lane
                raise
        slot.fill(lambda: self._command(name, arg, msg, sink))

    async def drain(self) -> None:
        """Wait until every accepted message has been answered."""
        await self._lanes.drain()

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop accepting messages; let answers in flight finish within ``grace_s``."""
        self._closing = True
        try:
            await asyncio.wait_for(self._lanes.drain(), grace_s)
        except TimeoutError:
            log.warning("answers still running after %.1fs; cancelling them", grace_s)
            self._lanes.cancel_all()
            # Each cut answer writes its closing note (bounded by CUT_NOTE_TIMEOUT_S)
            # while the adapters' connections are still open.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lanes.drain(), CUT_WAIT_S)

    # -- answering ---------------------------------------------------------

    async def _answer(self, msg: IncomingMessage, sink: ReplySink, turn_id: int) -> None:
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
        messages = await self._context(conv, msg, turn_id)
        stream = ReplyStream(sink, self.pacer, before_first_write=typing.settle)
        answer = Answer()
        deltas = self.model.stream(messages, answer)
        answer_id: int | None = None
        try:
            async with contextlib.aclosing(deltas):  # leaving early closes the HTTP stream
                async for delta in deltas:
                    await stream.push(delta)
            if not stream.text.strip():
                raise LLMError("bad_request", "the model returned an empty answer")
            # Stored before its last (paced) write lands and marked delivered after:
            # a crash in between shows this text again rather than asking twice.
            answer_id = await self._store_answer(conv, stream.text, answer, turn_id)
            await stream.finish()
        except LLMError as exc:
            log.warning("model call for %s failed: %s", conv, exc)
            await self._report(stream, sink, self.texts.get(f"error_{exc.kind}"))
            return False
        except DeliveryError as exc:
            log.warning("could not deliver the answer in %s: %s", conv, exc)
            await self._send_quietly(sink, self.texts.get("error_delivery"))
            return False
        except asyncio.CancelledError:  # shutdown after the grace period
            # Not marked done: the user turn stays unanswered for the next start.
            await stream.cut(self.texts.get("cut_by_restart"), CUT_NOTE_TIMEOUT_S)
            raise
        except Exception:
            log.exception("unexpected error while answering in %s", conv)
            await self._report(stream, sink, self.texts.get("error_internal"))
            return False
        if answer_id is not None:
            await self.store.mark_delivered(conv, answer_id)
        return True

    async def _show_again(self, conv: str, sink: ReplySink, answer: Turn) -> bool:
        """Post an answer that was stored but not fully shown before a crash."""
        stream = ReplyStream(sink, self.pacer)
        try:
            await stream.push(answer.content)
            await stream.finish()
        except DeliveryError as exc:
            log.warning("could not deliver the answer in %s: %s", conv, exc)
            await self._send_quietly(sink, self.texts.get("error_delivery"))
            return False
        await self.store.mark_delivered(conv, answer.id)
        return True

    async def _context(self, conv: str, msg: IncomingMessage, turn_id: int) -> list[ChatMessage]:
        """The prompt for user turn ``turn_id``: system prompt + history trimmed by tokens."""
        stored = await self.store.load_context(conv, turn_id, HISTORY_TURNS)
        messages, _stats = build_messages(
            stored.system_prompt or self.settings.system_prompt,
            stored.turns,
            self.settings.context_tokens - self.settings.max_output_tokens,
            self.counter,
            group=not msg.is_dm,
            shortened_note=self.texts.get("message_shortened"),
            memo=self._memo,
            key=conv,
        )
        return messages

    async def _store_answer(
        self, conv: str, text: str, answer: Answer, reply_to: int
    ) -> int | None:
        tokens = answer.usage.completion_tokens or self.counter.count(text)
        turn = Turn(
            role="assistant",
            content=text,
            tokens=tokens,
            created_at=time.time(),
            reply_to=reply_to,
            delivered=False,
        )
        return await self.store.add_assistant_turn(conv, turn)

    async def _report(self, stream: ReplyStream, sink: ReplySink, note: str) -> None:
        """Tell the user what went wrong, after any partial text already shown."""
        try:
            await stream.fail(note)
        except Exception:
            log.exception("could not show the error note; trying a plain message")
            await self._send_quietly(sink, note)

    async def _send_quietly(self, sink: ReplySink, text: str) -> None:
        """Send a fixed text (split at the sink's limit); log instead of raising."""
        try:
            for part in split_text(text, sink.limits.max_len):
                await sink.send(part.render())
        except Exception:
            log.exception("could not send a message to the conversation")

    # -- commands ----------------------------------------------------------

    async def _reply_once(self, msg: IncomingMessage, sink: ReplySink, text: str) -> None:
        """Reply with a fixed text, once per message even if it is redelivered."""
        conv = msg.key.as_str()
        slot = self._lanes.reserve(conv)
        try:
            first = await self.store.claim(conv, msg.message_id)
        except BaseException:
            slot.cancel()
            raise
        if not first:
            slot.cancel()
            return
        slot.fill(lambda: self._send_quietly(sink, text))

    async def _command(self, name: str, arg: str, msg: IncomingMessage, sink: ReplySink) -> None:
        await self._send_quietly(sink, await self._command_text(name, arg, msg))

    async def _command_text(self, name: str, arg: str, msg: IncomingMessage) -> str:
        conv = msg.key.as_str()
        prefix = self.settings.command_prefix
        if name == "help":
            return self.texts.get("help", prefix=prefix)
        if name == "reset":
            return self.texts.get("reset_done")
        if name != "system":
            return self.texts.get("unknown_command", command=name, prefix=prefix)
        if not arg:
            custom = await self.store.get_system_prompt(conv)
            if custom is None:
                return self.texts.get("system_default", prompt=self.settings.system_prompt)
            return self.texts.get("system_show", prompt=custom)
        if not self._may_set_system_prompt(msg):
            return self.texts.get("system_denied")
        if arg.lower() == "clear":
            await self.store.set_system_prompt(conv, None)
            return self.texts.get("system_cleared")
        if len(arg) > MAX_SYSTEM_PROMPT_CHARS:
            return self.texts.get("system_too_long", limit=MAX_SYSTEM_PROMPT_CHARS)
        await self.store.set_system_prompt(conv, arg)
        return self.texts.get("system_set")

    def _may_set_system_prompt(self, msg: IncomingMessage) -> bool:
        policy = self.settings.system_prompt_policy
        if policy == "anyone":
            return True
        if policy == "admins":
            # In a DM the author only changes their own conversation.
            return msg.author_is_admin or msg.is_dm
        return False
