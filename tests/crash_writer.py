"""Writes user turns as fast as it can, printing each one once it is stored.

Run as ``python -m tests.crash_writer DB_PATH PREFIX``; tests/test_storage_crash.py
SIGKILLs it mid-burst. A line ``<conversation> <message_id>`` is printed (and
flushed) only after ``add_user_turn`` returned, so every printed id must survive.
"""

from __future__ import annotations

import asyncio
import sys

from bot.types import Turn
from storage.sqlite import SqliteStore

WRITERS = 8  # concurrent conversations, like a busy bot
MAX_TURNS_PER_WRITER = 20_000  # a safety stop if nobody kills us
TEXT = "a user message of ordinary length " * 4


async def write(store: SqliteStore, conversation: str, prefix: str) -> None:
    for i in range(MAX_TURNS_PER_WRITER):
        message_id = f"{prefix}-{i}"
        turn = Turn(role="user", content=TEXT, tokens=40, message_id=message_id)
        turn_id = await store.add_user_turn(conversation, turn)
        if turn_id is None:
            raise SystemExit(f"{conversation} {message_id} was reported as a duplicate")
        sys.stdout.write(f"{conversation} {message_id}\n")
        sys.stdout.flush()
        if i % 2:  # mix in answers so commits of both kinds are in flight
            answer = Turn(role="assistant", content=TEXT, tokens=40, reply_to=turn_id)
            await store.add_assistant_turn(conversation, answer)


async def main(path: str, prefix: str) -> None:
    store = SqliteStore(path)
    await store.open()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        await asyncio.gather(*(write(store, f"conv{n}", prefix) for n in range(WRITERS)))
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
