"""Starting the operations endpoint when ``metrics.port`` asks for it.

Kept apart from bot/metrics.py so that a bot without the endpoint never loads the
Prometheus library: it is imported here only when the port is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from .adapter import Adapter
from .config import MetricsConfig
from .core import Core

READY_PROBE_CONVERSATION = "readyz"  # any key: the probe is one indexed read


@dataclass(frozen=True, slots=True)
class CoreProbe:
    """/readyz's questions, asked of the running core and its adapters."""

    core: Core
    adapters: Sequence[Adapter]

    async def store_ok(self) -> bool:
        await self.core.store.has_turns(READY_PROBE_CONVERSATION)
        return True

    def adapters_ok(self) -> bool:
        from .metrics import adapters_connected

        return bool(self.adapters) and adapters_connected(self.adapters)


def core_gauges(core: Core) -> dict[str, float]:
    """The queue depths, read when the endpoint is scraped."""
    model = core.model
    return {
        "busy_conversations": float(core.busy_conversations),
        "model_waiting": float(getattr(model, "waiting", 0)),
        "model_in_flight": float(getattr(model, "in_flight", 0)),
    }


@contextlib.asynccontextmanager
async def metrics_if(
    cfg: MetricsConfig, core: Core, adapters: Sequence[Adapter]
) -> AsyncIterator[int | None]:
    """Serve the endpoint while inside if ``cfg.port`` is set; yields its port or None."""
    if not cfg.port:
        yield None
        return
    from .metrics import serving_metrics

    probe = CoreProbe(core, adapters)
    async with serving_metrics(cfg.host, cfg.port, probe, lambda: core_gauges(core)) as port:
        yield port
