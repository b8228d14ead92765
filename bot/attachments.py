"""Reading what people attach: images, text files and PDFs, within limits.

Each attachment is classified by its name and the platform's content type, then
downloaded through the sink (:class:`FileSource`: the adapter knows the platform's
auth and hosts) with a timeout and a byte cap, and checked by its magic bytes: the
name never decides alone. What is kept is a :class:`bot.types.Media`:

* a text file: its text (UTF-8), cut at ``max_document_chars``;
* a PDF: the text of its first ``max_pdf_pages`` pages (pypdf), cut the same way;
* an image: a copy downscaled to ``IMAGE_MAX_SIDE`` pixels and re-encoded as JPEG.

Why a downscaled copy rather than the link, the original or a description: Discord
links expire after about a day and Slack links need the bot token, so a follow-up
("what colour was the car?") needs bytes of our own; originals run to megabytes
and would be sent again with every later question; a description made once would
lose whatever detail the next question asks about. Vision models scale large images
down anyway, so a JPEG of at most 1024 px keeps what they see at a tenth of the size.
Stored images are bounded per conversation (``image_budget_bytes``, oldest dropped).
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal, Protocol, runtime_checkable

import aiohttp

from .config import AttachmentsConfig
from .tokens import TokenCounter
from .types import Attachment, Media

log = logging.getLogger(__name__)

MB = 1_000_000
IMAGE_MAX_SIDE = 1024  # pixels; larger images are scaled down before they are kept
JPEG_QUALITY = 80
# Larger images are refused before they are decoded: a small file can claim a huge
# canvas (a decompression bomb), and Pillow alone only warns below twice its limit.
MAX_IMAGE_PIXELS = 40_000_000
# One image decoded at a time: a 40-megapixel RGBA canvas is 160 MB while it lasts.
_DECODING = threading.Lock()
DOWNLOAD_CHUNK = 64 * 1024
# One image, as the model bills a downscaled 1024 px picture (high detail is about
# 765 tokens for 1024x1024 at OpenAI); used for trimming, not for billing.
IMAGE_TOKENS = 765

IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
PDF_MAGIC = b"%PDF-"
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})
TEXT_EXTENSIONS = frozenset(
    {
        ".txt", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".yaml",
        ".yml", ".toml", ".ini", ".cfg", ".conf", ".log", ".xml", ".html", ".htm", ".css",
        ".py", ".js", ".ts", ".tsx", ".jsx", ".java", ".kt", ".go", ".rs", ".c", ".h",
        ".cpp", ".hpp", ".cc", ".cs", ".rb", ".php", ".swift", ".sh", ".bash", ".sql",
        ".r", ".lua", ".pl", ".scala", ".dart", ".vue", ".svelte", ".tex",
    }
)  # fmt: skip

FileKind = Literal["image", "text", "pdf"]
SkipReason = Literal[
    "too_many", "too_large", "too_many_pixels", "unsupported", "not_image", "failed", "unreadable"
]


class TooLarge(Exception):
    """The download passed its byte cap; reading stopped there."""


class TooManyPixels(ValueError):
    """An image whose header claims more than MAX_IMAGE_PIXELS; it is not decoded."""


class DownloadFailed(Exception):
    """The file could not be downloaded (status, timeout, connection, host)."""


@runtime_checkable
class FileSource(Protocol):
    """Downloads a message's attachments (a sink whose platform has them)."""

    async def fetch_file(self, attachment: Attachment, max_bytes: int, timeout_s: float) -> bytes:
        """The file's bytes; TooLarge past ``max_bytes``, DownloadFailed otherwise."""


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    """``attachments`` in config.yaml."""

    max_file_bytes: int = 10_000_000
    max_files_per_message: int = 4
    max_pdf_pages: int = 30
    max_document_chars: int = 40_000
    image_budget_bytes: int = 3_000_000  # downscaled images kept per conversation
    download_timeout_s: float = 20.0


def attachment_limits(cfg: AttachmentsConfig) -> AttachmentLimits:
    """The limits of config.yaml's ``attachments`` section."""
    return AttachmentLimits(
        max_file_bytes=int(cfg.max_file_mb * MB),
        max_files_per_message=cfg.max_files_per_message,
        max_pdf_pages=cfg.max_pdf_pages,
        max_document_chars=cfg.max_document_chars,
        image_budget_bytes=int(cfg.image_mb_per_conversation * MB),
        download_timeout_s=cfg.download_timeout_s,
    )


@dataclass(frozen=True, slots=True)
class Skipped:
    """An attachment (or a part of one) that was not read, and why."""

    name: str
    reason: SkipReason | Literal["cut"]  # "cut": read, but only its beginning


@dataclass(frozen=True, slots=True)
class ReadResult:
    media: list[Media]
    skipped: list[Skipped]


async def download(url: str, headers: dict[str, str], max_bytes: int, timeout_s: float) -> bytes:
    """GET ``url``, reading at most ``max_bytes`` (TooLarge past it), within ``timeout_s``."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            # No redirects: a token must never follow a link to another host.
            session.get(url, headers=headers, allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise DownloadFailed(f"HTTP {response.status}")
            if (response.content_length or 0) > max_bytes:
                raise TooLarge(str(response.content_length))
            body = bytearray()
            async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise TooLarge(f"more than {max_bytes}")  # stop reading here
            return bytes(body)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise DownloadFailed(f"{type(exc).__name__}: {exc}") from exc


def kind_of(attachment: Attachment) -> FileKind | None:
    """What the name and the platform's content type say the file is (None: not read)."""
    suffix = PurePosixPath(attachment.name.lower()).suffix
    declared = attachment.content_type.split(";")[0].strip().lower()
    if suffix in IMAGE_EXTENSIONS or declared.startswith("image/"):
        return "image"
    if suffix == ".pdf" or declared == "application/pdf":
        return "pdf"
    if suffix in TEXT_EXTENSIONS or declared.startswith("text/") or declared == "application/json":
        return "text"
    return None


def image_format(data: bytes) -> str | None:
    """The image format the magic bytes show, or None."""
    for magic, name in IMAGE_MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


async def read_all(
    attachments: Sequence[Attachment],
    source: FileSource,
    limits: AttachmentLimits,
    counter: TokenCounter,
) -> ReadResult:
    """Read a message's attachments in order; never raises for a bad file."""
    media: list[Media] = []
    skipped: list[Skipped] = []
    taken = 0  # files of a readable type: only those count against the limit
    for attachment in attachments:
        if kind_of(attachment) is None:
            skipped.append(Skipped(attachment.name, "unsupported"))
            continue
        taken += 1
        if taken > limits.max_files_per_message:
            skipped.append(Skipped(attachment.name, "too_many"))
            continue
        kept, problem = await _read_one(attachment, source, limits, counter)
        media.extend(kept)
        if problem is not None:
            skipped.append(Skipped(attachment.name, problem))
    return ReadResult(media, skipped)


async def _read_one(
    attachment: Attachment, source: FileSource, limits: AttachmentLimits, counter: TokenCounter
) -> tuple[list[Media], SkipReason | Literal["cut"] | None]:
    kind = kind_of(attachment)
    if kind is None:
        return [], "unsupported"
    if attachment.size > limits.max_file_bytes:
        return [], "too_large"
    try:
        data = await source.fetch_file(attachment, limits.max_file_bytes, limits.download_timeout_s)
    except TooLarge:
        return [], "too_large"
    except DownloadFailed as exc:
        log.info("could not download attachment %r: %s", attachment.name, exc)
        return [], "failed"
    if kind == "image":
        return await _image(attachment.name, data)
    if kind == "pdf":
        if not data.startswith(PDF_MAGIC):
            return [], "unreadable"
        try:
            text, cut = await asyncio.to_thread(_pdf_text, data, limits)
        except Exception as exc:  # pypdf raises many kinds on broken files
            log.info("could not read PDF %r: %s", attachment.name, exc)
            return [], "unreadable"
        return [_text_media(attachment.name, text, counter)], "cut" if cut else None
    if b"\x00" in data[:8192]:
        return [], "unsupported"  # binary data behind a text file's name
    text = data.decode("utf-8", errors="replace")
    cut = len(text) > limits.max_document_chars
    text = text[: limits.max_document_chars]
    return [_text_media(attachment.name, text, counter)], "cut" if cut else None


async def _image(name: str, data: bytes) -> tuple[list[Media], SkipReason | None]:
    if image_format(data) is None:
        return [], "not_image"
    try:
        jpeg = await asyncio.to_thread(downscale, data)
    except TooManyPixels as exc:
        log.info("refused image %r: %s", name, exc)
        return [], "too_many_pixels"
    except Exception as exc:  # Pillow: truncated, bomb, unknown mode...
        log.info("could not read image %r: %s", name, exc)
        return [], "unreadable"
    return [Media("image", name, data=jpeg, tokens=IMAGE_TOKENS)], None


def downscale(data: bytes) -> bytes:
    """The image as a JPEG of at most IMAGE_MAX_SIDE pixels a side (blocking)."""
    from PIL import Image  # imported here: only messages with images pay for it

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    with _DECODING:
        with warnings.catch_warnings():
            # Pillow warns of what the size check below refuses anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image = Image.open(io.BytesIO(data))
            except Image.DecompressionBombError as exc:  # over twice the limit: too big
                raise TooManyPixels(str(exc)) from exc
        with image:
            width, height = image.size  # from the header, nothing decoded yet
            if width * height > MAX_IMAGE_PIXELS:
                raise TooManyPixels(f"{width}x{height} is over {MAX_IMAGE_PIXELS:,} pixels")
            image.draft("RGB", (IMAGE_MAX_SIDE, IMAGE_MAX_SIDE))  # JPEG: decode smaller
            image.load()
            image.thumbnail((IMAGE_MAX_SIDE, IMAGE_MAX_SIDE))
            rgb = image.convert("RGB")  # JPEG has no alpha; transparent areas turn black
            out = io.BytesIO()
            rgb.save(out, format="JPEG", quality=JPEG_QUALITY)
            return out.getvalue()


def _pdf_text(data: bytes, limits: AttachmentLimits) -> tuple[str, bool]:
    """The first pages' text (blocking), and whether anything was left out."""
    from pypdf import PdfReader  # imported here: only messages with PDFs pay for it

    reader = PdfReader(io.BytesIO(data))
    pages = reader.pages
    parts: list[str] = []
    size = 0
    for index, page in enumerate(pages):
        if index >= limits.max_pdf_pages or size >= limits.max_document_chars:
            return "\n".join(parts)[: limits.max_document_chars], True
        text = page.extract_text() or ""
        parts.append(text)
        size += len(text) + 1
    text = "\n".join(parts)
    return text[: limits.max_document_chars], len(text) > limits.max_document_chars


def file_block(name: str, text: str) -> str:
    """How a file's text sits in the user's message."""
    return f"\n\n[file {name}]\n{text}\n[end of {name}]"


def _text_media(name: str, text: str, counter: TokenCounter) -> Media:
    return Media("text", name, text=text, tokens=counter.count(file_block(name, text)))
