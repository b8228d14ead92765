"""Streaming one answer into recording sinks, on a virtual clock.

The sinks record every call with its (virtual) time, take a little simulated
network latency, and fail the test if two writes overlap. Assertions are about
order, content and counts; times are only used to count writes per bucket.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, replace

import pytest

from bot.delivery import DeliveryError, ReplyStream
from bot.pacing import Pace, Pacer
from bot.split import split_text
from bot.types import NativeStreamUnavailable, PlatformLimits
from tests.support import SPLIT_PIECES as PIECES
from tests.support import VirtualTime, assert_within_bucket

LATENCY_S = 0.05  # simulated time of one platform call
DISCORD = PlatformLimits(max_len=2000, can_edit=True)


@dataclass(frozen=True)
class Call:
    op: str
    args: tuple[str, ...]
    at: float


class RecordingSink:
    """An in-memory ReplySink that records calls and checks they never overlap."""

    def __init__(
        self,
        vt: VirtualTime,
        limits: PlatformLimits,
        pace_key: str = "chan",
        failures: dict[str, int] | None = None,
    ) -> None:
        self.vt = vt
        self.limits = limits
        self.pace_key = pace_key
        self.calls: list[Call] = []
        self.messages: dict[str, str] = {}  # id -> current text, in posting order
        self._failures = dict(failures or {})
        self._ids = itertools.count(1)
        self._busy = False

    async def _enter(self, op: str, *args: str) -> None:
        assert not self._busy, f"{op} issued while another write was in flight"
        self._busy = True
        self.calls.append(Call(op, args, self.vt.now))
        try:
            await self.vt.sleep(LATENCY_S)
            if self._failures.get(op, 0) > 0:
                self._failures[op] -= 1
                raise RuntimeError(f"{op} broke")
        finally:
            self._busy = False

    def _check_len(self, text: str) -> None:
        assert 0 < len(text) <= self.limits.max_len, len(text)
        assert text.strip(), "blank message"

    async def typing(self) -> None:
        pass

    async def send(self, text: str) -> str:
        await self._enter("send", text)
        self._check_len(text)
        message_id = f"m{next(self._ids)}"
        self.messages[message_id] = text
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        await self._enter("edit", message_id, text)
        self._check_len(text)
        assert message_id in self.messages
        self.messages[message_id] = text

    def visible(self) -> list[str]:
        return list(self.messages.values())

    def ops(self) -> list[str]:
        return [call.op for call in self.calls]

    def write_times(self) -> list[float]:
        return [call.at for call in self.calls]


class NativeSink(RecordingSink):
    """Adds native streaming; ``refuse`` makes stream_start refuse like Slack can."""

    def __init__(self, *args: object, refuse: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.refuse = refuse
        self.open_streams: set[str] = set()

    async def stream_start(self, text: str) -> str:
        await self._enter("stream_start", text)
        if self.refuse:
            raise NativeStreamUnavailable("not in this workspace")
        self._check_len(text)
        stream_id = f"s{next(self._ids)}"
        self.messages[stream_id] = text
        self.open_streams.add(stream_id)
        return stream_id

    async def stream_append(self, stream_id: str, text: str) -> None:
        await self._enter("stream_append", stream_id, text)
        assert stream_id in self.open_streams
        self.messages[stream_id] += text
        self._check_len(self.messages[stream_id])

    async def stream_stop(self, stream_id: str, text: str = "") -> None:
        await self._enter("stream_stop", stream_id, text)
        assert stream_id in self.open_streams
        self.messages[stream_id] += text
        self._check_len(self.messages[stream_id])
        self.open_streams.remove(stream_id)


def chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def produce(
    stream: ReplyStream, vt: VirtualTime, pieces: list[str], gap: float = 0.01
) -> float:
    """Push like a model would, then finish; returns the time finish() was called."""
    for piece in pieces:
        await stream.push(piece)
        await vt.sleep(gap)
    finished_at = vt.now
    await stream.finish()
    return finished_at


def long_answer_with_code() -> str:
    """~4,500 characters; a ```python block runs across the 2,000 character mark."""
    intro = "".join(f"Sentence {i} of the introduction explains a step. " for i in range(12))
    code = "".join(f"    total_{i} = add(total_{i - 1}, {i})  # running sum\n" for i in range(60))
    outro = "".join(f"Closing remark {i} sums up what the code does. " for i in range(26))
    text = f"{intro}\n\n```python\ndef running():\n{code}    return total_59\n```\n\n{outro}\n"
    assert 4300 <= len(text) <= 4700, len(text)
    return text


def assert_edits_spaced(sink: RecordingSink, interval: float) -> None:
    last: dict[str, float] = {}
    for call in sink.calls:
        if call.op in ("edit", "stream_append"):
            message_id = call.args[0]
            if message_id in last:
                assert call.at - last[message_id] >= interval - 1e-9
            last[message_id] = call.at


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def pacer(vt: VirtualTime) -> Pacer:
    return Pacer(clock=vt.clock, sleep=vt.sleep)


# -- edit mode (Discord) -------------------------------------------------


async def test_short_answer_is_sent_at_once_then_edited(vt: VirtualTime, pacer: Pacer) -> None:
    sink = RecordingSink(vt, DISCORD)
    stream = ReplyStream(sink, pacer)
    await vt.run(produce(stream, vt, ["Hel", "lo ", "world", "!"], gap=0.1))
    assert sink.calls[0] == Call("send", ("Hel",), 0.0)  # first delta, no timer
    assert sink.ops().count("send") == 1
    assert sink.visible() == ["Hello world!"]
    assert "".join(p.body for p in stream.parts) == stream.text == "Hello world!"


async def test_closing_while_an_edit_waits_its_turn_writes_nothing_more(
    vt: VirtualTime, pacer: Pacer
) -> None:
    """Shutdown (aclose) cuts the writer off mid-wait; finish() would have written."""
    sink = RecordingSink(vt, DISCORD)
    stream = ReplyStream(sink, pacer)

    async def interrupted() -> None:
        await stream.push("Hello")
        await vt.sleep(0.1)  # "Hello" is out; an edit may follow 0.25 s after it
        await stream.push(" world")
        await vt.sleep(0.05)
        await stream.aclose()

    await vt.run(interrupted())
    assert sink.ops() == ["send"]
    assert sink.visible() == ["Hello"]


async def test_deltas_are_coalesced_and_push_never_waits(vt: VirtualTime, pacer: Pacer) -> None:
    sink = RecordingSink(vt, DISCORD)
    stream = ReplyStream(sink, pacer)
    text = "word " * 300
    pieces = chunks(text, 3)
    finished_at = await vt.run(produce(stream, vt, pieces, gap=0.01))
    assert finished_at == pytest.approx(len(pieces) * 0.01)  # pushes were never held back
    assert len(sink.calls) < len(pieces) // 5
    assert sink.visible() == [text]
    assert_within_bucket(sink.write_times(), DISCORD.edit_burst, DISCORD.edit_rate)
    assert_edits_spaced(sink, DISCORD.min_edit_interval)


async def test_blank_start_waits_for_visible_text(vt: VirtualTime, pacer: Pacer) -> None:
    sink = RecordingSink(vt, DISCORD)
    stream = ReplyStream(sink, pacer)
    await vt.run(produce(stream, vt, ["\n", "  ", "Hi"], gap=0.5))
    assert sink.calls[0].args == ("\n  Hi",)
    assert sink.visible() == ["\n  Hi"]


async def test_long_answer_with_code_is_split_and_fences_repaired(
    vt: VirtualTime, pacer: Pacer
) -> None:
    sink = RecordingSink(vt, DISCORD)
    stream = ReplyStream(sink, pacer)
    text = long_answer_with_code()
    await vt.run(produce(stream, vt, chunks(text, 15), gap=0.01))

    expected = split_text(text, 2000)
    assert stream.parts == expected
    assert sink.visible() == [p.render() for p in expected]
    assert "".join(p.body for p in stream.parts) == text
    assert all(len(message) <= 2000 for message in sink.visible())
    reopened = [i for i, p in enumerate(expected) if p.prefix == "```python\n"]
    assert reopened, "the code block should cross a part boundary"
    for i in reopened:
        assert sink.visible()[i - 1].endswith("\n```")
        assert sink.visible()[i].startswith("```python\n")
    assert_within_bucket(sink.write_times(), DISCORD.edit_burst, DISCORD.edit_rate)
    assert_edits_spaced(sink, DISCORD.min_edit_interval)


async def test_edit_rate_holds_over_a_two_second_stream(vt: VirtualTime, pacer: Pacer) -> None:
    limits = PlatformLimits(max_len=2000, can_edit=True, edit_burst=2, edit_rate=1.0)
    sink = RecordingSink(vt, limits)
    stream = ReplyStream(sink, pacer)
    text = "token " * 200
    await vt.run(produce(stream, vt, chunks(text, 6), gap=0.01))  # 2 s of deltas
    times = sink.write_times()
    assert_within_bucket(times, 2, 1.0)
    for second in range(int(max(times)) + 1):  # burst + one refill per second at most
        assert sum(1 for t in times if second <= t < second + 1) <= 2 + 1
    assert sink.visible() == [text]


async def test_interim_edits_close_an_open_code_block(vt: VirtualTime, pacer: Pacer) -> None:
    sink = RecordingSink(vt, DISCORD)
    stream = ReplyStream(sink, pacer)

    async def scenario() -> None:
        await stream.push("Code:\n```python\nx = 1\n")
        await vt.sleep(1.0)
        assert sink.visible() == ["Code:\n```python\nx = 1\n```"]
        await stream.push("```\n")
        await stream.finish()

    await vt.run(scenario())
    assert sink.visible() == ["Code:\n```python\nx = 1\n```\n"]


# -- native streaming (Slack, console) ------------------------------------


async def test_native_stream_appends_and_restarts_at_the_limit(
    vt: VirtualTime, pacer: Pacer
) -> None:
    limits = PlatformLimits(max_len=1000, can_edit=True, native_stream=True)
    sink = NativeSink(vt, limits)
    stream = ReplyStream(sink, pacer)
    text = "".join(f"Paragraph {i}: " + "some words here " * 6 + "\n\n" for i in range(25))
    pieces = chunks(text, 10)
    await vt.run(produce(stream, vt, pieces, gap=0.05))  # ~200 characters/s

    assert sink.calls[0] == Call("stream_start", (pieces[0],), 0.0)
    assert "send" not in sink.ops() and "edit" not in sink.ops()
    assert not sink.open_streams
    assert sink.visible() == [p.render() for p in stream.parts]
    assert len(stream.parts) >= 3
    assert "".join(p.body for p in stream.parts) == text
    starts, stops = sink.ops().count("stream_start"), sink.ops().count("stream_stop")
    assert starts == stops == len(stream.parts)
    assert_within_bucket(sink.write_times(), limits.edit_burst, limits.edit_rate)
    assert_edits_spaced(sink, limits.min_edit_interval)


async def test_native_stream_repairs_a_code_block_at_the_limit(
    vt: VirtualTime, pacer: Pacer
) -> None:
    limits = PlatformLimits(max_len=2000, can_edit=True, native_stream=True)
    sink = NativeSink(vt, limits)
    stream = ReplyStream(sink, pacer)
    text = long_answer_with_code()
    await vt.run(produce(stream, vt, chunks(text, 15), gap=0.01))
    assert sink.visible() == [p.render() for p in stream.parts]
    assert "".join(p.body for p in stream.parts) == text
    assert any(p.prefix == "```python\n" for p in stream.parts)


async def test_native_refusal_falls_back_to_send_and_edit(vt: VirtualTime, pacer: Pacer) -> None:
    limits = PlatformLimits(max_len=2000, can_edit=True, native_stream=True)
    sink = NativeSink(vt, limits, refuse=True)
    stream = ReplyStream(sink, pacer)
    text = long_answer_with_code()
    await vt.run(produce(stream, vt, chunks(text, 15), gap=0.01))
    assert sink.ops()[0] == "stream_start"
    assert sink.ops().count("stream_start") == 1
    assert sink.ops()[1] == "send"
    assert sink.visible() == [p.render() for p in split_text(text, 2000)]


# -- no edits (plain posting) ---------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [
        PlatformLimits(max_len=2000, can_edit=False),
        PlatformLimits(max_len=2000, can_edit=True, stream=False),
        PlatformLimits(max_len=2000, can_edit=True, native_stream=True, stream=False),
    ],
)
async def test_sink_without_streaming_gets_whole_parts(
    vt: VirtualTime, pacer: Pacer, limits: PlatformLimits
) -> None:
    sink = NativeSink(vt, limits)
    stream = ReplyStream(sink, pacer)
    text = long_answer_with_code()
    finished_at = await vt.run(produce(stream, vt, chunks(text, 15), gap=0.01))
    expected = [p.render() for p in split_text(text, 2000)]
    assert sink.ops() == ["send"] * len(expected)
    assert [call.args[0] for call in sink.calls] == expected
    assert sink.calls[0].at < finished_at  # a complete part goes out before the answer ends


# -- failures ---------------------------------------------------------------


async def test_fail_before_any_text_sends_the_note(vt: VirtualTime, pacer: Pacer) -> None:
    sink = RecordingSink(vt, DISCORD)
    stream = ReplyStream(sink, pacer)
    await vt.run(stream.fail("The model is unavailable, try again."))
    assert sink.visible() == ["The model is unavailable, try again."]


async def test_fail_after_text_appends_the_note(vt: VirtualTime, pacer: Pacer) -> None:
    sink = RecordingSink(vt, DISCORD)
    stream = ReplyStream(sink, pacer)

    async def scenario() -> None:
        await stream.push("The answer starts like")
        await vt.sleep(1.0)
        await stream.push(" this")
        await stream.fail("(the answer was cut off)")

    await vt.run(scenario())
    assert sink.visible() == ["The answer starts like this\n\n(the answer was cut off)"]
    assert sink.ops() == ["send", "edit"]


async def test_fail_inside_a_code_block_closes_it_first(vt: VirtualTime, pacer: Pacer) -> None:
    sink = RecordingSink(vt, DISCORD)
    stream = ReplyStream(sink, pacer)

    async def scenario() -> None:
        await stream.push("```python\nx = 1\n")
        await vt.sleep(1.0)
        await stream.fail("cut off")

    await vt.run(scenario())
    assert sink.visible() == ["```python\nx = 1\n```\n\ncut off"]


async def test_fail_note_that_does_not_fit_gets_its_own_message(
    vt: VirtualTime, pacer: Pacer
) -> None:
    sink = RecordingSink(vt, PlatformLimits(max_len=100, can_edit=True))
    stream = ReplyStream(sink, pacer)
    text = "x " * 45

    async def scenario() -> None:
        await stream.push(text)
        await vt.sleep(1.0)
        await stream.fail("the model stopped answering")

    await vt.run(scenario())
    assert sink.visible() == [text, "the model stopped answering"]


async def test_fail_in_a_native_stream_stops_it_with_the_note(
    vt: VirtualTime, pacer: Pacer
) -> None:
    limits = PlatformLimits(max_len=4000, can_edit=True, native_stream=True)
    sink = NativeSink(vt, limits)
    stream = ReplyStream(sink, pacer)

    async def scenario() -> None:
        await stream.push("Partial")
        await vt.sleep(1.0)
        await stream.fail("stopped")

    await vt.run(scenario())
    assert sink.visible() == ["Partial\n\nstopped"]
    assert sink.ops() == ["stream_start", "stream_stop"]  # the note goes with the stop


async def test_fail_without_edits_posts_rest_with_the_note(vt: VirtualTime, pacer: Pacer) -> None:
    sink = RecordingSink(vt, PlatformLimits(max_len=2000, can_edit=False))
    stream = ReplyStream(sink, pacer)

    async def scenario() -> None:
        await stream.push("Partial")
        await vt.sleep(1.0)
        await stream.fail("stopped")

    await vt.run(scenario())
    assert sink.visible() == ["Partial\n\nstopped"]


# -- sink errors -------------------------------------------------------------


async def test_a_failed_write_is_retried_once(vt: VirtualTime, pacer: Pacer) -> None:
    sink = RecordingSink(vt, DISCORD, failures={"edit": 1})
    stream = ReplyStream(sink, pacer, retry_delay=0.2)
    await vt.run(produce(stream, vt, ["Hello", " there", " friend"], gap=0.5))
    edits = [call for call in sink.calls if call.op == "edit"]
    assert len(edits) >= 2
    assert sink.visible() == ["Hello there friend"]
    assert_within_bucket(sink.write_times(), DISCORD.edit_burst, DISCORD.edit_rate)


async def test_a_write_that_fails_twice_raises_delivery_error(
    vt: VirtualTime, pacer: Pacer
) -> None:
    sink = RecordingSink(vt, DISCORD, failures={"send": 2})
    stream = ReplyStream(sink, pacer, retry_delay=0.2)

    async def scenario() -> None:
        await stream.push("Hello")
        await vt.sleep(2.0)
        with pytest.raises(DeliveryError):
            await stream.push(" again")
        with pytest.raises(DeliveryError):
            await stream.finish()

    await vt.run(scenario())
    assert sink.ops() == ["send", "send"]


async def test_native_start_error_is_retried_not_treated_as_refusal(
    vt: VirtualTime, pacer: Pacer
) -> None:
    limits = PlatformLimits(max_len=4000, can_edit=True, native_stream=True)
    sink = NativeSink(vt, limits, failures={"stream_start": 1})
    stream = ReplyStream(sink, pacer, retry_delay=0.2)
    await vt.run(produce(stream, vt, ["Hello", " world"], gap=0.5))
    assert sink.ops()[:2] == ["stream_start", "stream_start"]
    assert sink.visible() == ["Hello world"]


# -- many channels ---------------------------------------------------------


async def test_twenty_channels_stream_independently(vt: VirtualTime, pacer: Pacer) -> None:
    limits = PlatformLimits(max_len=2000, can_edit=True, edit_burst=1, edit_rate=1.0)
    sinks = [RecordingSink(vt, limits, pace_key=f"channel-{i}") for i in range(20)]
    streams = [ReplyStream(sink, pacer) for sink in sinks]
    text = "streamed text " * 40

    async def everyone() -> list[float]:
        return await asyncio.gather(
            *(produce(stream, vt, chunks(text, 10), gap=0.05) for stream in streams)
        )

    finished = await vt.run(everyone())
    for sink, finished_at in zip(sinks, finished, strict=True):
        assert sink.calls[0].at == 0.0
        # One shared timer at 1 write/s would allow ~3 writes in total by now.
        assert sum(1 for t in sink.write_times() if t <= finished_at) >= 3
        assert_within_bucket(sink.write_times(), 1, 1.0)
        assert sink.visible() == [text]


async def test_streams_in_one_channel_share_its_bucket(vt: VirtualTime, pacer: Pacer) -> None:
    limits = PlatformLimits(max_len=2000, can_edit=True, edit_burst=2, edit_rate=2.0)
    sinks = [RecordingSink(vt, limits, pace_key="same-channel") for _ in range(3)]
    streams = [ReplyStream(sink, pacer) for sink in sinks]
    text = "shared pace " * 30

    async def everyone() -> None:
        await asyncio.gather(*(produce(s, vt, chunks(text, 8), gap=0.03) for s in streams))

    await vt.run(everyone())
    # Each answer's first text goes out on credit (later writes pay it back), so the
    # channel holds at most one write per answer above the bucket.
    writes = [t for sink in sinks for t in sink.write_times()]
    assert_within_bucket(writes, 2 + len(sinks), 2.0)
    assert all(sink.calls[0].at == 0.0 for sink in sinks)  # no question waits to start
    assert all(sink.visible() == [text] for sink in sinks)


# -- randomized: any text, any chunking, any mode --------------------------

MODES = {
    "edit": (PlatformLimits(max_len=0, can_edit=True), False),
    "parts": (PlatformLimits(max_len=0, can_edit=False), False),
    "native": (PlatformLimits(max_len=0, can_edit=True, native_stream=True), False),
    "refused": (PlatformLimits(max_len=0, can_edit=True, native_stream=True), True),
}


@pytest.mark.parametrize("seed", range(40))
async def test_random_answers_arrive_whole_and_paced(seed: int) -> None:
    rng = random.Random(seed)
    vt = VirtualTime()
    pacer = Pacer(clock=vt.clock, sleep=vt.sleep)
    mode = rng.choice(sorted(MODES))
    template, refuse = MODES[mode]
    limits = replace(template, max_len=rng.randint(80, 600), edit_burst=rng.randint(1, 5))
    sink = NativeSink(vt, limits, refuse=refuse)
    stream = ReplyStream(sink, pacer)
    text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 150)))
    pieces = chunks(text, rng.randint(1, 40))
    await vt.run(produce(stream, vt, pieces, gap=rng.choice([0.0, 0.01, 0.1])))

    assert stream.text == text
    assert "".join(p.body for p in stream.parts) == text
    assert sink.visible() == [p.render() for p in stream.parts if p.render().strip()]
    assert not sink.open_streams
    assert_within_bucket(sink.write_times(), limits.edit_burst, limits.edit_rate)
    assert_edits_spaced(sink, limits.min_edit_interval)


@pytest.mark.parametrize("seed", range(20))
async def test_random_failures_show_the_note_once_at_the_end(seed: int) -> None:
    rng = random.Random(1000 + seed)
    vt = VirtualTime()
    pacer = Pacer(clock=vt.clock, sleep=vt.sleep)
    template, refuse = MODES[rng.choice(sorted(MODES))]
    limits = replace(template, max_len=rng.randint(80, 400))
    sink = NativeSink(vt, limits, refuse=refuse)
    stream = ReplyStream(sink, pacer)
    text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 60)))
    note = "(the answer broke off here)"

    async def scenario() -> None:
        for piece in chunks(text, rng.randint(1, 30)):
            await stream.push(piece)
            await vt.sleep(0.02)
        await stream.fail(note)

    await vt.run(scenario())
    visible = sink.visible()
    assert visible[-1].endswith(note)
    assert sum(message.count(note) for message in visible) == 1
    assert not sink.open_streams
    assert "".join(p.body for p in stream.parts) == text


# -- what the reader waits for is never held back -------------------------


async def test_final_text_does_not_wait_for_the_coalescing_interval(
    vt: VirtualTime, pacer: Pacer
) -> None:
    limits = replace(DISCORD, min_edit_interval=1.0)
    sink = RecordingSink(vt, limits)
    stream = ReplyStream(sink, pacer)
    finished_at = await vt.run(produce(stream, vt, chunks("a b c d e f g h", 2), gap=0.01))
    assert sink.visible() == ["a b c d e f g h"]
    # The answer was complete at `finished_at`: the last edit follows it at once,
    # not a whole interval after the first send.
    assert sink.calls[-1].at - finished_at < limits.min_edit_interval / 2
    assert sink.ops() == ["send", "edit"]


async def test_platform_paced_sinks_skip_our_pacer_for_first_and_final_writes(
    vt: VirtualTime, pacer: Pacer
) -> None:
    # A bucket that would hold every write for 10 s: with pace_essential False the
    # first and the final text still go out at once (the client obeys the server's
    # rate-limit headers), while optional edits in between wait for the bucket.
    limits = replace(
        DISCORD, edit_burst=1, edit_rate=0.1, min_edit_interval=0.0, pace_essential=False
    )
    await pacer.acquire("chan", 1, 0.1)  # the channel's budget is spent
    sink = RecordingSink(vt, limits)
    stream = ReplyStream(sink, pacer)
    finished_at = await vt.run(produce(stream, vt, ["first", " second", " third"], gap=0.3))
    assert sink.calls[0].at == 0.0
    assert sink.visible() == ["first second third"]
    assert sink.calls[-1].at - finished_at < 1.0
    assert sink.ops() == ["send", "edit"]  # the optional interim edit never got a token


async def test_with_our_pacer_a_first_text_goes_at_once_and_later_writes_pay_for_it(
    vt: VirtualTime, pacer: Pacer
) -> None:
    # pace_essential: the answer's first write never waits (a question in a busy
    # channel starts at once) but is charged to the channel's bucket; the writes
    # after it wait longer, so the channel's average stays within edit_rate.
    limits = replace(
        DISCORD, edit_burst=1, edit_rate=0.1, min_edit_interval=0.0, pace_essential=True
    )
    await pacer.acquire("chan", 1, 0.1)  # the channel's budget is spent
    first = RecordingSink(vt, limits)
    await vt.run(produce(ReplyStream(first, pacer), vt, ["first", " second"], gap=0.3))
    assert first.ops() == ["send", "edit"]
    assert first.calls[0].at == 0.0
    assert first.calls[1].at >= 19.0  # one write on credit + its own: 2 / 0.1 per s
    second = RecordingSink(vt, limits)
    started = vt.now
    await vt.run(produce(ReplyStream(second, pacer), vt, ["next"], gap=0.0))
    assert second.calls[0].at == started
    assert second.visible() == ["next"]


# -- sinks that pace each kind of write on its own bucket (Slack) ------------------------


class PacedSink(NativeSink):
    """Posts per channel, other writes per workspace bucket, like the Slack sink."""

    def pace_for(self, op: str) -> Pace:
        if op == "send":
            return Pace("post", 10, 10.0)
        return Pace(f"ws:{op}", 1, 0.01)  # one at once, then one per 100 s


NATIVE = PlatformLimits(max_len=4000, can_edit=True, native_stream=True, min_edit_interval=0.0)


async def test_without_a_final_write_token_the_answer_goes_whole_in_one_post(
    vt: VirtualTime, pacer: Pacer
) -> None:
    sink = PacedSink(vt, NATIVE)
    pacer.charge("ws:stop", 1, 0.01)  # another answer took the workspace's stop token
    stream = ReplyStream(sink, pacer)
    await vt.run(produce(stream, vt, ["The whole ", "answer, ", "in pieces."], gap=0.5))
    assert sink.ops() == ["send"]  # no stream it could not stop in time
    assert sink.visible() == ["The whole answer, in pieces."]
    assert vt.now < 100  # it did not wait for the stop bucket


async def test_the_final_write_uses_the_token_taken_before_the_stream_opened(
    vt: VirtualTime, pacer: Pacer
) -> None:
    sink = PacedSink(vt, NATIVE)
    stream = ReplyStream(sink, pacer)
    await vt.run(produce(stream, vt, ["The whole ", "answer, ", "in pieces."], gap=0.5))
    # Intermediate appends were skipped (the workspace's append bucket is one per 100 s);
    # the first and the final text went out, the stop on the token taken at the start.
    assert sink.ops() == ["stream_start", "stream_append", "stream_stop"]
    assert sink.visible() == ["The whole answer, in pieces."]
    assert vt.now < 100
    # The stop's token is spent: the next stream has to wait for one.
    assert not sink.open_streams
