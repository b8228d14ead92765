"""Start-up and shutdown: build the store, client and core once, run the adapters.

This is the composition root, and the one module in ``bot/`` that imports
``storage`` and ``adapters`` (``tests/test_layering.py``). It lives here because
``python -m bot`` starts in ``bot/`` and the layout has no other top-level package
for it; the core modules still import neither. ``adapters.registry`` imports a
platform's package only when that platform is started, so importing this module
loads no platform library.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

from adapters.registry import PLATFORMS, create_adapter
from storage import check_url, open_store
from storage.alive import alive_ids

from .accounting import accounting_for
from .adapter import Adapter
from .attachments import attachment_limits
from .config import Config
from .core import Core, CoreSettings
from .errors import StartupError, StorageError
from .events import MeasuredModel
from .handoff import HandoffSettings, share_store
from .llm import OpenAIChat, make_client
from .modelcap import CappedModel
from .models import Catalog, chat_model
from .ops import metrics_if
from .recovery import recovering
from .shutdown import shut_down
from .texts import Texts
from .tokens import token_counter_for
from .tools.wiring import running_tools
from .types import ChatModel, Platform

# PLATFORMS is re-exported for the command line (bot/__main__.py), which imports
# only this module of the wiring.
__all__ = [
    "EXIT_STORAGE",
    "PLATFORMS",
    "check_storage",
    "describe_instances",
    "migrate_store",
    "running_core",
    "serve",
]

log = logging.getLogger(__name__)

EXIT_STORAGE = 1  # an adapter stopped because the store failed (the console)
# Young-generation collections start after this many net new container objects
# (CPython's default: 700). An answer briefly holds a few thousand (parsed gateway
# events, request bodies, the SDK's request objects) and frees them by reference
# counting, so at 700 the collector ran many times a second mid-answer, walking
# objects about to be freed anyway (PERFORMANCE.md, "The collector skips start-up
# state and waits longer"). The memory it may hold meanwhile is a few MB.
GC_YOUNG_THRESHOLD = 7000
MIB = 1024 * 1024


def check_storage(url: str) -> None:
    """Raise the ConfigError opening ``storage.url`` would, creating nothing (for ``check``)."""
    check_url(url)


def migrate_store(source: str | None, target: str | None, batch_rows: int | None = None) -> int:
    """``python -m bot migrate-store --from URL --to URL`` (storage/migrate.py)."""
    from storage.migrate import run_migration  # loaded for this command only

    return run_migration(source, target, batch_rows)


async def describe_instances(url: str) -> str:
    """One line for ``check``: how many instances are alive on ``storage.url``.

    A database that cannot be read raises the ConfigError a start would (exit 2):
    ``check`` exists to find what would stop the bot."""
    ids = await alive_ids(url)
    listed = f" ({', '.join(ids)})" if ids else ""
    return (
        f"instances: {len(ids)} alive on this database{listed}; "
        "one started now would be another, with a new id"
    )


@contextlib.asynccontextmanager
async def running_core(cfg: Config, adapters: Sequence[Adapter] = ()) -> AsyncIterator[Core]:
    """One store, one OpenAI client and one core for the whole process; on the way
    out, ``bot.shutdown.shut_down`` stops ``adapters`` (a list the caller may still
    fill) and the core in the order that loses nothing."""
    cache_bytes = cfg.limits.memory_cache_mb * MIB // 2  # half here, half the core's memo
    store = open_store(
        cfg.storage.url,
        retention_days=cfg.storage.retention_days,
        cache_bytes=cache_bytes,
        pool_size=cfg.storage.pool_size,
    )
    await store.open()
    client = make_client(cfg.openai)
    counter = await asyncio.to_thread(token_counter_for, cfg.openai.model)
    texts = Texts(cfg.language, prefix=cfg.commands.prefix)
    catalog = Catalog.from_config(cfg.openai)

    def measured(made: ChatModel) -> ChatModel:
        return MeasuredModel(made) if cfg.metrics.port else made  # timed for the endpoint

    model = CappedModel(
        measured(chat_model(client, cfg.openai, catalog)), cfg.openai.max_concurrent_requests
    )
    fallback = cfg.quotas.fallback_model
    tools = await running_tools(cfg.tools)  # MCP servers; a failing one only logs
    core = Core(
        store=store,
        model=model,
        accounting=accounting_for(
            store,
            usage=cfg.usage,
            quotas=cfg.quotas,
            texts=texts,
            counter=counter,
            model_name=cfg.openai.model,
            fallback=model.sharing(
                measured(OpenAIChat.from_config(client, replace(cfg.openai, model=fallback)))
            )
            if fallback
            else None,
        ),
        counter=counter,
        texts=texts,
        settings=CoreSettings(
            system_prompt=cfg.openai.system_prompt,
            context_tokens=cfg.openai.context_tokens,
            max_output_tokens=cfg.openai.max_output_tokens,
            command_prefix=cfg.commands.prefix,
            system_prompt_policy=cfg.commands.system_prompt_policy,
            user_messages_per_minute=cfg.limits.user_messages_per_minute,
            reset_policy=cfg.commands.reset_policy,
            max_waiting_per_conversation=cfg.limits.max_waiting_per_conversation,
            max_waiting_per_person=cfg.limits.max_waiting_per_person,
            history_memo_bytes=cache_bytes,
            max_messages_per_answer=cfg.limits.max_messages_per_answer,
            show_reasoning=cfg.openai.show_reasoning,
            attachments=attachment_limits(cfg.attachments),
            vision=cfg.openai.vision,
            model_name=cfg.openai.model,
            models=catalog,
            model_policy=cfg.commands.model_policy,
        ),
        tools=tools.hub,
        tool_limits=tools.limits,
    )
    try:
        yield core
    finally:
        await shut_down(core, adapters, client.close, store)
        await tools.close()


@contextlib.asynccontextmanager
async def local_model_if(cfg: Config, wanted: bool) -> AsyncIterator[Config]:
    """With ``--local``, start the bundled llama.cpp server and point the config at it."""
    if not wanted:
        yield cfg
        return
    from .local_model import start_local_model  # optional extra; imported only here

    async with start_local_model() as local:
        log.info("local model %s ready in %.1fs", local.model, local.load_seconds)
        openai_cfg = replace(
            cfg.openai,
            base_url=local.base_url,
            model=local.model,
            context_tokens=local.context_tokens,
            max_output_tokens=min(cfg.openai.max_output_tokens, local.context_tokens // 4),
        )
        yield replace(cfg, openai=openai_cfg)


async def serve(cfg: Config, platforms: Sequence[Platform], *, local: bool = False) -> int:
    """Run the given adapters until SIGINT/SIGTERM or until they all stop."""
    stop = asyncio.Event()
    _on_signals(stop.set)
    started: list[Adapter] = []  # shut down by running_core, in order, on the way out
    async with local_model_if(cfg, local) as cfg, running_core(cfg, started) as core:
        handoff = await share_store(core, _handoff_settings(cfg), cfg.limits)
        adapters = [a for name in platforms if (a := create_adapter(name, cfg, core)) is not None]
        if not adapters:
            raise StartupError(core.texts.get("no_platforms"))
        # Without a handoff, a restart's cut-off messages hold their places before
        # any adapter takes messages; the handoff sweeps instead (also what other
        # instances left).
        max_age = cfg.recovery.max_age_minutes if handoff is None else 0
        async with recovering(core, max_age) as recovery:
            if not await _start(adapters, started, stop):
                return 0  # stopped by a signal while starting: shut down as usual
            _tune_collector()
            leftovers = (
                recovery.answering(started) if handoff is None else handoff.sweeping(started)
            )
            async with leftovers, metrics_if(cfg.metrics, core, started):
                ended = await _until_stopped(stop, started)
    return EXIT_STORAGE if any(_storage_failed(w) for w in ended) else 0


async def _start(adapters: Sequence[Adapter], started: list[Adapter], stop: asyncio.Event) -> bool:
    """Start each adapter; ``started`` lists those to close, a failed one included.
    False if a signal came first: a start can wait long (a platform's retries), and
    SIGTERM must still stop the bot then."""
    for adapter in adapters:
        started.append(adapter)
        starting = asyncio.ensure_future(adapter.start())
        signalled = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signalled.cancel()
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        if not starting.cancelled():
            starting.result()  # a failed start raises here
        if stop.is_set():
            return False
        log.info("%s adapter running", adapter.name)
    return True


def _handoff_settings(cfg: Config) -> HandoffSettings:
    """instances.failover_s, and recovery's age limit for what the handoff answers."""
    return HandoffSettings(cfg.instances.failover_s, cfg.recovery.max_age_minutes * 60.0)


def _tune_collector() -> None:
    """Keep what start-up loaded out of the collector's full passes, and let the
    young generation grow past one answer's short-lived objects.

    The tokenizer's tables, the SDKs' modules and models and the platform clients live
    as long as the process; a full collection walked them all, stalling every
    conversation at once (PERFORMANCE.md, "The collector skips start-up state and
    waits longer").
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def _until_stopped(
    stop: asyncio.Event, adapters: Sequence[Adapter]
) -> set[asyncio.Future[object]]:
    """Wait for a signal or an adapter that stopped on its own; what ended."""
    waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(stop.wait())]
    waiters += [asyncio.ensure_future(a.wait_closed()) for a in adapters]
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return done


def _storage_failed(ended: asyncio.Future[object]) -> bool:
    return not ended.cancelled() and isinstance(ended.exception(), StorageError)


def _on_signals(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, callback)
