"""``async with`` for the fake servers: start on enter, close on exit."""

from __future__ import annotations

from typing import Self


class Served:
    """Mixin for a fake server with ``start()`` and ``close()`` coroutines."""

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
