"""Attachment rows (the ``media`` table) to and from :class:`bot.types.Media`, for
the SQLite and PostgreSQL stores alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bot.types import Media


def to_rows(
    conversation: str, turn_id: int, media: Sequence[Media], now: float
) -> list[tuple[Any, ...]]:
    """INSERT parameters, in ``SQL_ADD_MEDIA``'s column order."""
    return [
        (conversation, turn_id, m.kind, m.name, m.text, m.data, len(m.data), m.tokens, now)
        for m in media
    ]


def by_turn(rows: Iterable[Sequence[Any]]) -> dict[int, list[Media]]:
    """``SQL_MEDIA_FOR`` rows grouped by user turn id."""
    found: dict[int, list[Media]] = {}
    for turn_id, kind, name, text, data, tokens in rows:
        media = Media("image" if kind == "image" else "text", name, text, bytes(data), tokens)
        found.setdefault(int(turn_id), []).append(media)
    return found
