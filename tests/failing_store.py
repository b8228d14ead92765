"""A real SQLite store whose writes can be made to fail, as a full or broken disk does."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3

from bot.store import Origin, StoredContext
from bot.types import Turn
from storage.sqlite import SqliteStore

DISK_IO_ERROR = sqlite3.OperationalError("disk I/O error")
DISK_FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class BrokenDiskStore(SqliteStore):
    """While ``failure`` is set, every write raises it before touching the file
    (``answer_failure``: only storing an answer; ``load_failure``: loading a history).
    While ``gate`` is set, storing a user turn first waits for it (a slow disk); with
    ``gate_text`` too, only a user turn whose text contains it waits."""

    failure: Exception | None = None
    answer_failure: Exception | None = None  # only storing an answer fails
    load_failure: Exception | None = None  # only loading a history fails
    gate: asyncio.Event | None = None
    gate_text: str | None = None
    waiting = 0  # user turns waiting at the gate

    def _check(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def add_user_turn(
        self, conversation: str, turn: Turn, origin: Origin | None = None
    ) -> int | None:
        if self.gate is not None and (self.gate_text or "") in turn.content:
            self.waiting += 1
            await self.gate.wait()
            self.waiting -= 1
        self._check()
        return await super().add_user_turn(conversation, turn, origin)

    async def add_assistant_turn(self, conversation: str, turn: Turn) -> int | None:
        self._check()
        if self.answer_failure is not None:
            raise self.answer_failure
        return await super().add_assistant_turn(conversation, turn)

    async def load_context(self, conversation: str, upto: int, limit: int) -> StoredContext:
        if self.load_failure is not None:
            raise self.load_failure
        return await super().load_context(conversation, upto, limit)

    async def claim(self, conversation: str, message_id: str) -> bool:
        self._check()
        return await super().claim(conversation, message_id)

    async def reset(self, conversation: str) -> None:
        self._check()
        await super().reset(conversation)
