"""``logging.format: json``: one JSON object per line, for log collectors.

Each line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``; while
an answer is being made, also its ``conversation``, ``message_id`` and ``latency_s``
(seconds since the answer began), from :data:`ANSWER` (a context variable the core
sets, so nothing has to be passed to each log call). Secrets are redacted by the
handler's RedactingFilter (bot/redact.py) before this formatter sees the record,
and the bot's own log lines carry ids, never message text, at INFO.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class AnswerContext:
    """Which answer the current task is making."""

    conversation: str
    message_id: str
    started: float  # time.monotonic()


ANSWER: contextvars.ContextVar[AnswerContext | None] = contextvars.ContextVar(
    "chatbridge_answer", default=None
)


@contextlib.contextmanager
def answering(conversation: str, message_id: str) -> Iterator[None]:
    """Tag the log lines of the current task with this answer while inside."""
    token = ANSWER.set(AnswerContext(conversation, message_id, time.monotonic()))
    try:
        yield
    finally:
        ANSWER.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        answer = ANSWER.get()
        if answer is not None:
            line["conversation"] = answer.conversation
            line["message_id"] = answer.message_id
            line["latency_s"] = round(time.monotonic() - answer.started, 3)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line).decode()


def use_json(logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (the root) the JSON formatter."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(JsonFormatter())
