"""The core's vocabulary: what adapters hand in and what the core hands back.

Adapters translate a platform payload into an :class:`IncomingMessage` in a pure
function and give the core a :class:`ReplySink` bound to the conversation the
message came from. Nothing here knows any platform library.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from .tool_calls import ToolCallAccumulator

Role = Literal["user", "assistant"]
Platform = Literal["discord", "slack", "console"]
KNOWN_PLATFORMS: tuple[Platform, ...] = get_args(Platform)


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Where a conversation lives; two keys that differ never share history."""

    platform: Platform
    workspace: str  # guild id / team id / "local"; "@dm" for Discord DMs
    channel: str
    thread: str | None = None
    user: str | None = None  # set for DMs so each person has their own history

    def as_str(self) -> str:
        """A stable string form, used as the storage key."""
        parts = (self.platform, self.workspace, self.channel, self.thread or "", self.user or "")
        return ":".join(p.replace("\\", "\\\\").replace(":", "\\:") for p in parts)

    def place(self) -> str:
        """The channel the conversation is in (its threads and DMs' people left out)."""
        return ConversationKey(self.platform, self.workspace, self.channel).as_str()

    @classmethod
    def parse(cls, text: str) -> ConversationKey:
        """The key whose ``as_str()`` is ``text`` (restart recovery reads it back)."""
        parts: list[str] = []
        current: list[str] = []
        chars = iter(text)
        for char in chars:
            if char == "\\":
                current.append(next(chars, ""))
            elif char == ":":
                parts.append("".join(current))
                current = []
            else:
                current.append(char)
        parts.append("".join(current))
        if len(parts) != 5:
            raise ValueError(f"not a conversation key: {text!r}")
        platform, workspace, channel, thread, user = parts
        for known in KNOWN_PLATFORMS:
            if platform == known:
                return cls(known, workspace, channel, thread or None, user or None)
        raise ValueError(f"not a conversation key (unknown platform): {text!r}")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message, as the platform describes it (not yet downloaded)."""

    name: str
    url: str  # Discord: the CDN URL; Slack: url_private (needs the bot token)
    size: int  # bytes, as the platform says (checked again while downloading)
    content_type: str = ""  # the platform's guess; the bytes' magic decides
    file_id: str = ""  # Slack: files.info finds the URL when the event has none


MediaKind = Literal["text", "image"]


@dataclass(frozen=True, slots=True)
class Media:
    """What was kept of one attachment, stored beside its user turn (bot/attachments.py)."""

    kind: MediaKind
    name: str
    text: str = ""  # kind "text": the file's text (a PDF's extracted text)
    data: bytes = b""  # kind "image": a downscaled JPEG
    tokens: int = 0  # counted once when stored


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One user message, already translated from the platform's payload."""

    key: ConversationKey
    message_id: str  # platform id, unique within the conversation (used for dedupe)
    author_id: str
    author_name: str
    text: str  # mentions already made readable, the bot's own mention stripped
    sent_at: float  # unix seconds
    addressed: bool  # mention, DM, reply to the bot, slash command
    in_thread: bool = False  # a thread follow-up counts as addressed if the bot is in it
    is_dm: bool = False
    author_is_admin: bool = False  # adapter decides (Manage Server, listed roles/users)
    # Where to answer, rebuilt by the adapter after a restart (Adapter.sink_for): a
    # small string only the adapter reads (JSON of channel, thread, reply-to id).
    reply_target: str | None = None
    attachments: tuple[Attachment, ...] = ()  # images and files, read when answering


@dataclass(frozen=True, slots=True)
class PlatformLimits:
    """What a sink can do; the core's delivery logic adapts to it."""

    max_len: int  # longest single message, in characters
    can_edit: bool  # whether sent messages can be edited (stream by editing)
    native_stream: bool = False  # sink implements stream_start/append/stop
    edit_burst: int = 5  # writes allowed at once per pace key (token bucket size)
    edit_rate: float = 1.0  # writes per second refilled per pace key
    min_edit_interval: float = 0.25  # seconds between edits of one message (coalescing)
    # The first and the final write of a message never wait. True: they are charged
    # to the pace key's bucket (optional edits wait longer); False: they skip our
    # pacer, because the platform client obeys the server's rate-limit headers.
    pace_essential: bool = True
    stream: bool = True  # False: post one message per part when the answer is done
    # Seconds after which a typing indicator fades and is shown again while the answer
    # has not begun (a reasoning model may think for a minute); 0: shown once.
    typing_refresh_s: float = 0.0


@runtime_checkable
class ReplySink(Protocol):
    """Posts replies into the one conversation it was made for."""

    limits: PlatformLimits
    pace_key: str  # edits are paced per this key (a channel), not per bot

    async def typing(self) -> None:
        """Show that an answer is coming (typing indicator, status line)."""

    async def send(self, text: str) -> str:
        """Post a new message; return its id."""

    async def edit(self, message_id: str, text: str) -> None:
        """Replace the text of a message this sink sent."""


@runtime_checkable
class NativeStreamSink(ReplySink, Protocol):
    """A sink whose platform streams text natively (Slack, the console)."""

    async def stream_start(self, text: str) -> str:
        """Open a streamed message with its first text; return its id."""

    async def stream_append(self, stream_id: str, text: str) -> None:
        """Append text to an open streamed message."""

    async def stream_stop(self, stream_id: str, text: str = "") -> None:
        """Close a streamed message, appending ``text`` first (one write)."""


@runtime_checkable
class ReasoningSink(ReplySink, Protocol):
    """A sink that can show a model's thinking in a collapsed form (show_reasoning)."""

    async def show_reasoning(self, label: str, summary: str) -> None:
        """Post ``summary`` (one bounded paragraph) collapsed, headed by ``label``."""


class NativeStreamUnavailable(Exception):
    """Raised by stream_start when the platform refuses native streaming here.

    The core then falls back to send/edit for this answer; the adapter should
    remember the refusal (e.g. per workspace) and stop advertising native_stream.
    """


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message of a conversation.

    storage/sqlite_ops.py (``row_to_turn``) builds turns positionally (it is the hot
    path): keep the order.
    """

    role: Role
    content: str
    tokens: int  # counted once when stored (another model's encoding: bot/models.py)
    author_id: str | None = None
    author_name: str | None = None
    message_id: str | None = None
    created_at: float = 0.0
    id: int = 0  # assigned by the store
    reply_to: int | None = None  # for assistant turns: the user turn they answer
    delivered: bool = True  # an answer is stored before its last write lands, then marked
    # For an answer that used tools: its tool calls and results (JSON list of the
    # assistant/tool messages, bot/tool_use.py), sent again before it in later prompts.
    tools: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one model call, when the server reports it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class Answer:
    """What a model call produced (mutable while streaming)."""

    text: str = ""
    usage: Usage = field(default_factory=Usage)
    # The model's thinking (bounded, bot/reasoning.py): never stored, shown only with
    # openai.show_reasoning.
    reasoning: str = ""
    model: str = ""  # the model to ask (bot/models.py); "": the configured one
    # Function tools offered for this call (bot/tool_loop.py), and the calls the
    # model made, put together from the stream (bot/tool_calls.py).
    tools: Sequence[Mapping[str, Any]] = ()
    tool_calls: ToolCallAccumulator | None = None


# {"role": ..., "content": ..., optionally "name"}; a user message with images has a
# list of content parts (text and image_url) instead of a string (bot/media_flow.py);
# tool use adds "tool_calls" (a list) to assistant messages and "tool_call_id" to "tool"
# messages (bot/tool_loop.py).
ChatMessage = dict[str, Any]


def message_text(message: ChatMessage) -> str:
    """A message's text: its content, or the text parts of a content list."""
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")


class ChatModel(Protocol):
    """Streams an answer from a chat model (bot.llm.OpenAIChat is the real one)."""

    def stream(self, messages: list[ChatMessage], answer: Answer) -> AsyncGenerator[str, None]:
        """Yield text deltas; fill ``answer.usage`` when known.

        Raises bot.errors.LLMError (with a kind) when the call fails for good,
        after retries. Retries happen only before the first delta is yielded.
        """
        ...
