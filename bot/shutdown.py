"""The one shutdown path, in the order that loses nothing.

1. Every adapter stops its intake: nothing more is acknowledged (Slack retries an
   unacked event, later, to the next process), and messages being handed over finish.
2. The core gives answers in flight ``SHUTDOWN_GRACE_S`` to finish; they still post
   through the adapters' REST clients. Answers cut after that end with a note and stay
   unanswered in the store.
3. The adapters close their remaining connections, then the model client, then the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapter import Adapter
    from .core import Core
    from .store import Store

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0  # answers in flight get this long to finish on SIGTERM
# Stopping intake: messages already being stored get this long before an adapter
# closes its connection (storing takes milliseconds; a locked file, seconds).
INTAKE_GRACE_S = 5.0


async def shut_down(
    core: Core,
    adapters: Sequence[Adapter],
    close_client: Callable[[], Awaitable[None]],
    store: Store,
    grace_s: float = SHUTDOWN_GRACE_S,
) -> None:
    """Stop intake, let answers finish, close adapters, the client, the store."""
    for adapter in reversed(adapters):
        await _quietly(adapter.name, "stop taking messages", adapter.stop_intake)
    await core.close(grace_s)
    for adapter in reversed(adapters):
        await _quietly(adapter.name, "close", adapter.close)
    await close_client()
    await store.close()


async def _quietly(name: str, what: str, step: Callable[[], Awaitable[None]]) -> None:
    """One adapter's failure must not keep the others (or the store) open."""
    try:
        await step()
    except Exception as exc:
        log.warning("%s adapter: could not %s: %r", name, what, exc)


@contextlib.asynccontextmanager
async def in_background(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``work`` as a task while the body runs; on the way out, cancel it and
    wait until it has stopped."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
