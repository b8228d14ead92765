"""Attachments in the answer flow: read and keep them, put them in the prompt, and
fall back to text when the model cannot see images.

The core calls, for one answer: :meth:`MediaFlow.take` (download and store the new
message's attachments, in the answer's lane so slow downloads never hold up intake),
:meth:`MediaFlow.fold` (history turns with their files' text and image markers, for
token trimming), :meth:`MediaFlow.attach` (image parts for the kept markers) and
:meth:`MediaFlow.stream` (the model call, retried once without images when the
server says the model has no vision).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from .attachments import (
    MAX_IMAGE_PIXELS,
    AttachmentLimits,
    FileSource,
    Skipped,
    file_block,
    read_all,
)
from .config import VisionMode
from .errors import LLMError
from .store import Store
from .texts import Texts
from .tokens import TokenCounter
from .types import Answer, ChatMessage, ChatModel, IncomingMessage, Media, ReplySink, Turn

log = logging.getLogger(__name__)

MB = 1_000_000
# Models known to read text only; under "auto" every other model is sent images
# until a server says otherwise (a 400 naming images), which is then remembered.
_TEXT_ONLY = re.compile(
    r"gpt-3\.5|^gpt-4$|^gpt-4-0|o1-mini|o3-mini|deepseek|qwq|mixtral|codellama|phi-?[1-3]\b",
    re.I,
)
_NO_VISION_ERROR = re.compile(r"image|vision|multimodal|multi-modal", re.I)
# Messages whose attachments are read at once, process-wide: each may hold up to
# max_files_per_message * max_file_bytes in memory while it is read.
MAX_PARALLEL_READS = 4
# Conversations already told that their model cannot see images (told once each);
# past this many the oldest may be told again.
MAX_TOLD_BLIND = 10_000
_MARKER = re.compile(r"\[image [^\]\n]* #(\d+)\.(\d+)\]")


class Vision:
    """Whether the model is sent images (``openai.vision``), learned from a 400."""

    def __init__(self, mode: VisionMode, model: str) -> None:
        self._on = mode == "on" or (mode == "auto" and not _TEXT_ONLY.search(model))
        self._learns = mode == "auto"

    @property
    def on(self) -> bool:
        return self._on

    def refused(self, exc: LLMError) -> bool:
        """Whether ``exc`` says the model cannot read images; then images stay off."""
        if not self._learns or exc.kind != "bad_request" or not _NO_VISION_ERROR.search(exc.detail):
            return False
        log.warning("the model refused images; sending text only from now on (%s)", exc.detail)
        self._on = False
        return True


@dataclass(slots=True)
class Taken:
    """What reading one message's attachments left for the answer."""

    kept: int = 0  # media stored
    notes: list[str] = dataclasses.field(default_factory=list)  # shown after the answer
    had_images: bool = False
    conversation: str = ""


@dataclass(frozen=True, slots=True)
class Folded:
    """History turns with their media folded in, and the images by marker key."""

    turns: list[Turn]
    images: dict[tuple[int, int], Media] = dataclasses.field(default_factory=dict)


class MediaFlow:
    """Attachments for the core (one per process)."""

    def __init__(
        self,
        store: Store,
        counter: TokenCounter,
        texts: Texts,
        limits: AttachmentLimits,
    ) -> None:
        self._store = store
        self._counter = counter
        self._texts = texts
        self._limits = limits
        self._visions: dict[str, Vision] = {}  # per model, bounded by the catalog
        self._reading = asyncio.Semaphore(MAX_PARALLEL_READS)
        self._told_blind: OrderedDict[str, None] = OrderedDict()

    def vision_for(self, model: str, mode: VisionMode) -> Vision:
        """Whether ``model`` is sent images (learned per model)."""
        vision = self._visions.get(model)
        if vision is None:
            vision = self._visions[model] = Vision(mode, model)
        return vision

    @property
    def enabled(self) -> bool:
        return self._limits.max_files_per_message > 0

    async def take(
        self, conv: str, msg: IncomingMessage, sink: ReplySink, turn_id: int, vision: Vision
    ) -> Taken:
        """Download, read and store ``msg``'s attachments as user turn ``turn_id``'s."""
        taken = Taken(conversation=conv)
        if not msg.attachments:
            return taken
        if not self.enabled or not isinstance(sink, FileSource):
            taken.notes.append(
                self._skipped([Skipped(a.name, "unsupported") for a in msg.attachments])
            )
            return taken
        if await self._store.media_for(conv, turn_id, turn_id):
            return taken  # a redelivery after a crash: read and kept the first time
        async with self._reading:
            result = await read_all(msg.attachments, sink, self._limits, self._counter)
        if result.media:
            await self._store.add_media(
                conv, turn_id, result.media, self._limits.image_budget_bytes
            )
        taken.kept = len(result.media)
        taken.had_images = any(m.kind == "image" for m in result.media)
        if result.skipped:
            taken.notes.append(self._skipped(result.skipped))
        if taken.had_images and not vision.on:
            self._tell_blind(taken)
        return taken

    def _tell_blind(self, taken: Taken) -> None:
        """Say once per conversation that its model did not see the images."""
        if taken.conversation in self._told_blind:
            return
        self._told_blind[taken.conversation] = None
        if len(self._told_blind) > MAX_TOLD_BLIND:
            self._told_blind.popitem(last=False)
        taken.notes.append(self._texts.get("images_not_read"))

    async def fold(self, conv: str, turns: list[Turn], may_have_media: bool = True) -> Folded:
        """``turns`` with their media: image markers, then each file's text."""
        if not self.enabled or not may_have_media:
            return Folded(turns)
        ids = [t.id for t in turns if t.role == "user" and t.id]
        if not ids:
            return Folded(turns)
        found = await self._store.media_for(conv, min(ids), max(ids))
        if not found:
            return Folded(turns)
        images = {
            (turn_id, n): m
            for turn_id, media in found.items()
            for n, m in enumerate(media)
            if m.kind == "image"
        }
        return Folded([_folded(t, found[t.id]) if t.id in found else t for t in turns], images)

    def attach(
        self, messages: list[ChatMessage], folded: Folded, vision: Vision
    ) -> list[ChatMessage]:
        """Image parts beside each user message's kept markers (when vision is on)."""
        images = folded.images
        if not images or not vision.on:
            return messages
        out: list[ChatMessage] = []
        for message in messages:
            content = message.get("content")
            keys = _MARKER.findall(content) if isinstance(content, str) else []
            parts = [images[k] for k in ((int(a), int(b)) for a, b in keys) if k in images]
            if message.get("role") != "user" or not parts:
                out.append(message)
                continue
            out.append(
                {
                    **message,
                    "content": [{"type": "text", "text": content}, *map(_image_part, parts)],
                }
            )
        return out

    async def stream(
        self,
        model: ChatModel,
        messages: list[ChatMessage],
        answer: Answer,
        taken: Taken,
        vision: Vision,
    ) -> AsyncGenerator[str, None]:
        """The model's answer; once without images if the server refuses them."""
        shown = False
        try:
            async with contextlib.aclosing(model.stream(messages, answer)) as deltas:
                async for delta in deltas:
                    shown = True
                    yield delta
            return
        except LLMError as exc:
            if shown or not _has_images(messages) or not vision.refused(exc):
                raise
        if taken.had_images:
            self._tell_blind(taken)
        async with contextlib.aclosing(model.stream(text_only(messages), answer)) as deltas:
            async for delta in deltas:
                yield delta

    def _skipped(self, skipped: Sequence[Skipped]) -> str:
        limits = self._limits
        values = {
            "limit_mb": f"{limits.max_file_bytes / MB:g}",
            "limit_mp": f"{MAX_IMAGE_PIXELS / 1_000_000:g}",
            "limit_files": limits.max_files_per_message,
            "limit_pages": limits.max_pdf_pages,
            "limit_chars": limits.max_document_chars,
        }
        items = [self._texts.get(f"file_{s.reason}", name=s.name, **values) for s in skipped]
        return self._texts.get("files_skipped", items="; ".join(items))


def _folded(turn: Turn, media: list[Media]) -> Turn:
    markers = [f"[image {m.name} #{turn.id}.{n}]" for n, m in enumerate(media) if m.kind == "image"]
    blocks = [file_block(m.name, m.text) for m in media if m.kind == "text"]
    lead = "\n".join(markers)
    content = "\n".join(p for p in (turn.content, lead) if p) + "".join(blocks)
    return dataclasses.replace(
        turn, content=content, tokens=turn.tokens + sum(m.tokens for m in media) + len(markers) * 8
    )


def _image_part(media: Media) -> dict[str, Any]:
    url = "data:image/jpeg;base64," + base64.b64encode(media.data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}


def _has_images(messages: list[ChatMessage]) -> bool:
    return any(isinstance(m.get("content"), list) for m in messages)


def text_only(messages: list[ChatMessage]) -> list[ChatMessage]:
    """``messages`` with image parts removed (content back to plain text)."""
    out: list[ChatMessage] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            text = "".join(p.get("text", "") for p in content if p.get("type") == "text")
            message = {**message, "content": text}
        out.append(message)
    return out
