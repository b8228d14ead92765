"""Usage, quotas and forget-me end to end: the real core and ``openai`` client
against the fake OpenAI server, on every storage backend where storage matters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from bot.accounting import Accounting, accounting_for
from bot.config import Language, QuotasConfig, UsageConfig
from bot.core import Core
from bot.events import EVENTS
from bot.llm import OpenAIChat
from bot.modelcap import CappedModel
from bot.texts import Texts
from bot.tokens import token_counter_for
from bot.types import Answer, ChatModel
from bot.usage import UsageQuery
from fakes.fake_model import FakeModel, says
from fakes.fake_openai import Behaviour, FakeOpenAI, error, reply, unsupported_parameter
from tests.store_support import KINDS, AnyStore, FakeClock, opened_store
from tests.support import RecordingSink, make_core, message, settle

MODEL = "gpt-4o-mini"  # make_core's model
FALLBACK = "gpt-small-fallback"
PRICES = (f"{MODEL} 0.15 0.60",)
WS = "console:w1"  # tests.support.message's workspace
DEC_7_NOON = 1_796_644_800.0  # 2026-12-07 12:00 UTC
MONTH = UsageQuery(WS, "2026-12-01", "2027-01-01")


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnyStore]:
    async with opened_store(request.param, tmp_path, FakeClock()) as s:
        yield s


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[AnyStore]:
    async with opened_store("memory", tmp_path, FakeClock()) as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    made = FakeClock()
    made.now = DEC_7_NOON
    return made


def fallback_model(client: openai.AsyncOpenAI) -> OpenAIChat:
    return OpenAIChat(
        client,
        model=FALLBACK,
        temperature=0.5,
        max_output_tokens=500,
        request_timeout_s=5.0,
        first_token_timeout_s=2.0,
        max_retries=0,
    )


def usage_core(
    client: openai.AsyncOpenAI,
    store: AnyStore,
    clock: FakeClock,
    *,
    quotas: QuotasConfig | None = None,
    prices: tuple[str, ...] = PRICES,
    language: Language = "en",
) -> Core:
    quotas = quotas or QuotasConfig()
    texts = Texts(language)
    accounting = accounting_for(
        store,
        usage=UsageConfig(prices=prices),
        quotas=quotas,
        texts=texts,
        counter=token_counter_for(MODEL),
        model_name=MODEL,
        fallback=fallback_model(client) if quotas.fallback_model else None,
    )
    assert isinstance(accounting, Accounting)
    accounting.clock = clock
    return make_core(client, store, language=language, accounting=accounting)


async def ask(core: Core, text: str, **kw: object) -> str:
    sink = RecordingSink()
    await core.handle(message(text, **kw), sink)  # type: ignore[arg-type]
    await settle(core)
    return "\n".join(sink.texts)


# -- the ledger ------------------------------------------------------------------------


async def test_the_servers_usage_and_the_price_are_recorded(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, store: AnyStore, clock: FakeClock
) -> None:
    core = usage_core(openai_client, store, clock)
    fake_openai.script(reply("Hi there.", usage=(1200, 300)))
    try:
        assert await ask(core, "hello", author="ann") == "Hi there."
    finally:
        await core.close(1.0)
    assert fake_openai.chat_requests[0]["stream_options"] == {"include_usage": True}
    totals = await store.usage_totals(UsageQuery(WS, "2026-12-07", "2026-12-08", person="id-ann"))
    assert (totals.answers, totals.prompt_tokens, totals.completion_tokens) == (1, 1200, 300)
    assert totals.cost == pytest.approx((1200 * 0.15 + 300 * 0.60) / 1_000_000)
    assert (totals.estimated, totals.unpriced) == (0, 0)


async def test_without_a_usage_chunk_our_count_is_recorded_as_estimated(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, memory: AnyStore, clock: FakeClock
) -> None:
    core = usage_core(openai_client, memory, clock)
    fake_openai.script(reply("An answer of several words.", usage=(9999, 9999), send_usage=False))
    try:
        await ask(core, "hello there")
    finally:
        await core.close(1.0)
    totals = await memory.usage_totals(MONTH)
    assert totals.estimated == 1
    assert 0 < totals.completion_tokens < 50 and 0 < totals.prompt_tokens < 200


# How OpenAI-compatible servers word the refusal: OpenAI's own error object, and a
# pydantic validation list (vLLM and other FastAPI servers) with no code or param.
STREAM_OPTIONS_REJECTED = [
    unsupported_parameter("stream_options"),
    error(
        400,
        "[{'type': 'extra_forbidden', 'loc': ('body', 'stream_options'), "
        "'msg': 'Extra inputs are not permitted'}]",
        type_="BadRequestError",
        code=None,
    ),
]


@pytest.mark.parametrize("rejection", STREAM_OPTIONS_REJECTED, ids=["openai", "pydantic"])
async def test_a_server_that_rejects_stream_options_is_asked_once_more_without_them(
    fake_openai: FakeOpenAI,
    openai_client: openai.AsyncOpenAI,
    memory: AnyStore,
    clock: FakeClock,
    rejection: Behaviour,
) -> None:
    core = usage_core(openai_client, memory, clock)
    fake_openai.script(rejection)
    try:
        first = await ask(core, "one")
        second = await ask(core, "two")
    finally:
        await core.close(1.0)
    assert first and second and "error" not in (first + second).lower()
    sent = ["stream_options" in body for body in fake_openai.chat_requests]
    assert sent == [True, False, False]  # rejected once, then remembered
    assert (await memory.usage_totals(MONTH)).estimated == 2


async def test_a_model_without_a_price_is_counted_in_tokens_only(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, memory: AnyStore, clock: FakeClock
) -> None:
    core = usage_core(openai_client, memory, clock, prices=())
    fake_openai.script(reply("ok", usage=(10, 5)))
    try:
        await ask(core, "hello")
        shown = await ask(core, "!usage")
    finally:
        await core.close(1.0)
    totals = await memory.usage_totals(MONTH)
    assert (totals.tokens, totals.cost, totals.unpriced) == (15, 0.0, 1)
    assert "+1 answers from models without a price" in shown


# -- !usage ----------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "ko"])
async def test_usage_shows_people_their_own_and_admins_more(
    fake_openai: FakeOpenAI,
    openai_client: openai.AsyncOpenAI,
    memory: AnyStore,
    clock: FakeClock,
    language: Language,
) -> None:
    core = usage_core(openai_client, memory, clock, language=language)
    texts = Texts(language)
    fake_openai.script(reply("a", usage=(100, 10)), reply("b", usage=(2000, 200)))
    try:
        await ask(core, "hello", author="ann")
        await ask(core, "hello", author="bob")
        mine = await ask(core, "!usage", author="ann")
        admin = await ask(core, "!usage", author="bob", admin=True)
    finally:
        await core.close(1.0)
    own_today = texts.get("usage_own_today", totals="").strip()
    assert own_today in mine and "110" in mine and "2,200" not in mine
    assert texts.get("usage_workspace_month", totals="").strip() not in mine
    assert texts.get("usage_workspace_month", totals="").strip() in admin
    assert texts.get("usage_top_users") in admin
    assert texts.get("usage_prices_as_of", date=UsageConfig().prices_as_of) in admin
    assert admin.index("1. id-bob") < admin.index("2. id-ann")
    assert "2,310" in admin  # the workspace's month: both answers


# -- quotas ----------------------------------------------------------------------------


async def test_a_persons_daily_token_quota_refuses_until_the_next_utc_day(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, store: AnyStore, clock: FakeClock
) -> None:
    quotas = QuotasConfig(person_daily_tokens=100)
    core = usage_core(openai_client, store, clock, quotas=quotas)
    fake_openai.default = reply("fine", usage=(80, 30))
    refusals = EVENTS.quota_refusals["person"]
    try:
        assert await ask(core, "first", author="ann") == "fine"
        refused = await ask(core, "second", author="ann")
        assert await ask(core, "bob is not capped", author="bob") == "fine"
        calls = len(fake_openai.chat_requests)
        clock.now += 11 * 3600 + 59 * 60  # 23:59 the same day
        assert await ask(core, "still today", author="ann") == refused
        assert len(fake_openai.chat_requests) == calls  # refused before the model
        clock.now += 60  # midnight UTC
        assert await ask(core, "a new day", author="ann") == "fine"
    finally:
        await core.close(1.0)
    assert refused == Texts("en").get(
        "quota_person_tokens", limit="100", reset="2026-12-08 00:00 UTC"
    )
    assert EVENTS.quota_refusals["person"] == refusals + 2  # the metrics endpoint's count


async def test_a_workspaces_monthly_cost_quota_holds_for_everyone_until_next_month(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, store: AnyStore, clock: FakeClock
) -> None:
    quotas = QuotasConfig(workspace_monthly_cost=0.5)
    core = usage_core(openai_client, store, clock, quotas=quotas)
    fake_openai.default = reply("fine", usage=(1_000_000, 1_000_000))  # $0.75
    try:
        assert await ask(core, "first", author="ann") == "fine"
        refused = await ask(core, "second", author="bob")
        clock.now = 1_798_761_599.0  # 2026-12-31 23:59:59 UTC
        assert await ask(core, "later", author="cy") == refused
        clock.now += 1  # 2027-01-01
        assert await ask(core, "new month", author="cy") == "fine"
    finally:
        await core.close(1.0)
    assert refused == Texts("en").get(
        "quota_workspace_cost", limit="$0.5000", reset="2027-01-01 00:00 UTC"
    )


async def test_ko_quota_reply_names_the_limit_and_the_reset(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, memory: AnyStore, clock: FakeClock
) -> None:
    core = usage_core(
        openai_client, memory, clock, quotas=QuotasConfig(person_daily_tokens=10), language="ko"
    )
    fake_openai.default = reply("좋아요", usage=(10, 10))
    try:
        await ask(core, "하나")
        refused = await ask(core, "둘")
    finally:
        await core.close(1.0)
    assert "10" in refused and "2026-12-08 00:00 UTC" in refused and "초기화" in refused


async def test_with_a_fallback_model_a_reached_quota_answers_with_it(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, store: AnyStore, clock: FakeClock
) -> None:
    quotas = QuotasConfig(person_daily_tokens=50, fallback_model=FALLBACK)
    core = usage_core(openai_client, store, clock, quotas=quotas)
    fake_openai.default = reply("fine", usage=(40, 20))
    try:
        assert await ask(core, "first") == "fine"
        assert await ask(core, "second") == "fine"
    finally:
        await core.close(1.0)
    assert [body["model"] for body in fake_openai.chat_requests] == [MODEL, FALLBACK]
    top = await store.usage_totals(UsageQuery(WS, "2026-12-01", "2027-01-01"))
    assert top.answers == 2 and top.unpriced == 1  # the fallback has no price here


# -- forget me -------------------------------------------------------------------------


async def test_forget_me_deletes_my_turns_in_every_conversation_of_the_workspace(
    fake_openai: FakeOpenAI,
    openai_client: openai.AsyncOpenAI,
    store: AnyStore,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = usage_core(openai_client, store, clock)
    try:
        await ask(core, "my secret one", author="ann", channel="c1")
        await ask(core, "my secret two", author="ann", channel="c2")
        await ask(core, "bob's question", author="bob", channel="c1")
        with caplog.at_level(logging.INFO):
            done = await ask(core, "!forget me", author="ann", channel="c1")
        denied = await ask(core, "!forget id-bob", author="ann", channel="c1")
        await ask(core, "what do you remember?", author="ann", channel="c1")
        prompt = str(fake_openai.chat_requests[-1]["messages"])
        by_admin = await ask(core, "!forget id-bob", author="cy", admin=True)
    finally:
        await core.close(1.0)
    texts = Texts("en")
    assert done == texts.get("forget_done", count=2)
    assert denied == texts.get("forget_denied")
    assert by_admin == texts.get("forget_done", count=1)
    assert not await store.has_turns("console:w1:c2::")
    assert "my secret" not in prompt and "bob's question" in prompt
    assert "my secret" not in caplog.text and "forget: 2 message(s) of id-ann" in caplog.text
    assert (await store.usage_totals(MONTH)).answers == 4  # usage rows stay


async def test_forget_without_an_argument_explains_itself(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, memory: AnyStore, clock: FakeClock
) -> None:
    core = usage_core(openai_client, memory, clock)
    try:
        shown = await ask(core, "!forget")
    finally:
        await core.close(1.0)
    assert shown == Texts("en").get("forget_usage")


async def test_quotas_hold_across_a_restart_and_a_second_instance(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI, store: AnyStore, clock: FakeClock
) -> None:
    quotas = QuotasConfig(person_daily_tokens=100)
    fake_openai.default = reply("fine", usage=(80, 30))
    first = usage_core(openai_client, store, clock, quotas=quotas)
    try:
        assert await ask(first, "first", author="ann") == "fine"
    finally:
        await first.close(1.0)  # writes the usage still in memory
    again = usage_core(openai_client, store, clock, quotas=quotas)
    other = usage_core(openai_client, store, clock, quotas=quotas)
    try:
        refused = Texts("en").get("quota_person_tokens", limit="100", reset="2026-12-08 00:00 UTC")
        assert await ask(again, "after a restart", author="ann") == refused
        assert await ask(other, "on another instance", author="ann") == refused
    finally:
        await again.close(1.0)
        await other.close(1.0)


async def test_the_fallback_model_waits_for_the_same_concurrency_slots() -> None:
    gate = asyncio.Event()
    main = CappedModel(FakeModel(says("main", gate=gate)), 1)
    fallback = main.sharing(FakeModel(says("fallback")))

    async def read(model: ChatModel) -> str:
        return "".join([delta async for delta in model.stream([], Answer())])

    first = asyncio.ensure_future(read(main))
    second = asyncio.ensure_future(read(fallback))
    for _ in range(20):  # let both reach their slot
        await asyncio.sleep(0)
    assert (main.in_flight, fallback.waiting) == (1, 1)  # one slot for both
    gate.set()
    assert await first == "main" and await second == "fallback"
