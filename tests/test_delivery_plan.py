"""The delivery planners as pure functions: no sink, no pacer, no event loop.

A small screen model performs each planned step the way a platform would (send
posts, edit replaces, start/append/stop stream) and records it in the Answer, as
ReplyStream's executor does. Writing after some pushes and not others stands for
coalescing: the writer sees the text only when its turn comes.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.delivery_plan import (
    PLANNERS,
    Answer,
    Mode,
    Op,
    plan_edit,
    plan_native,
    plan_parts,
)
from bot.split import Fence, split_text
from tests.support import SPLIT_PIECES

NOTE = "(the answer broke off here)"
MAX_STEPS_PER_FLUSH = 10_000  # a planner that never settles fails instead of hanging


class Screen:
    """What a platform shows: messages by id, and which native streams are open."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.messages: dict[str, str] = {}
        self.open_streams: set[str] = set()
        self.ops: list[Op] = []
        self._ids = itertools.count(1)

    def write(self, op: Op, msg_id: str | None, text: str) -> str | None:
        """Perform one step; returns the id of the message it wrote to."""
        self.ops.append(op)
        if op is Op.SKIP:
            return msg_id
        if op in (Op.SEND, Op.START):
            msg_id = f"m{next(self._ids)}"
            self.messages[msg_id] = text
            if op is Op.START:
                self.open_streams.add(msg_id)
        else:
            assert msg_id is not None, op
            if op is Op.EDIT:
                self.messages[msg_id] = text
            else:
                assert msg_id in self.open_streams, op
                self.messages[msg_id] += text
                if op in (Op.CLOSE, Op.STOP):
                    self.open_streams.remove(msg_id)
        shown = self.messages[msg_id]
        assert 0 < len(shown) <= self.max_len and shown.strip(), (op, shown)
        return msg_id


def flush(mode: Mode, answer: Answer, screen: Screen) -> None:
    """Write every step the planner asks for until it has nothing more to write."""
    for _ in range(MAX_STEPS_PER_FLUSH):
        step = PLANNERS[mode](answer)
        if step is None:
            return
        msg_id = screen.write(step.op, answer.msg_id, step.text)
        answer.shown_by(step, msg_id)
    raise AssertionError("the planner never settled")


def deliver(
    mode: Mode, pieces: list[str], writes: list[bool], max_len: int, note: str | None
) -> tuple[Answer, Screen]:
    """Push ``pieces``, writing after those ``writes`` marks; then close and write."""
    answer, screen = Answer(max_len), Screen(max_len)
    for piece, write in zip(pieces, itertools.cycle(writes or [True]), strict=False):
        answer.buf += piece
        if write:
            flush(mode, answer, screen)
    answer.closing, answer.note = True, note
    flush(mode, answer, screen)
    answer.end()
    return answer, screen


answers = st.lists(st.sampled_from(SPLIT_PIECES), max_size=80).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(list(Mode)),
    text=answers,
    cuts=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=20),
    writes=st.lists(st.booleans(), max_size=8),
    max_len=st.integers(min_value=80, max_value=600),
)
def test_after_finish_the_screen_shows_exactly_the_pushed_text(
    mode: Mode, text: str, cuts: list[int], writes: list[bool], max_len: int
) -> None:
    pieces, at = [], 0
    for size in itertools.cycle(cuts):
        if at >= len(text):
            break
        pieces.append(text[at : at + size])
        at += size
    answer, screen = deliver(mode, pieces, writes, max_len, None)

    assert answer.text == text
    assert "".join(part.body for part in answer.parts) == text
    if mode is not Mode.NATIVE:  # a stream cannot take back text it showed: it may cut later
        assert answer.parts == split_text(text, max_len)
    rendered = [part.render() for part in answer.parts if part.render().strip()]
    assert list(screen.messages.values()) == rendered
    assert not screen.open_streams
    if mode is Mode.PARTS:
        assert set(screen.ops) <= {Op.SEND, Op.SKIP}  # never edits


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(list(Mode)), text=answers, max_len=st.integers(80, 400))
def test_a_note_that_fits_ends_the_last_message_once(mode: Mode, text: str, max_len: int) -> None:
    answer, screen = deliver(mode, list(text), [False, True], max_len, NOTE)
    visible = list(screen.messages.values())
    assert sum(message.count(NOTE) for message in visible) == int(answer.note_shown)
    if answer.note_shown:
        assert visible[-1].endswith(NOTE)
    assert "".join(part.body for part in answer.parts) == text
    assert not screen.open_streams


def progress(buf: str, *, msg_id: str | None = None, **changes: Any) -> Answer:
    """An answer of ``buf`` on a 100-character platform, with ``changes`` made."""
    answer = Answer(max_len=100)
    answer.buf, answer.msg_id = buf, msg_id
    for name, value in changes.items():
        assert hasattr(answer, name), name
        setattr(answer, name, value)
    return answer


def test_edit_mode_sends_the_first_text_then_edits_it() -> None:
    first = plan_edit(progress("Hello"))
    assert first is not None and (first.op, first.text) == (Op.SEND, "Hello")
    assert plan_edit(progress("Hello", msg_id="m1", shown="Hello")) is None
    later = plan_edit(progress("Hello there", msg_id="m1", shown="Hello"))
    assert later is not None and (later.op, later.text) == (Op.EDIT, "Hello there")


def test_edit_mode_closes_an_open_code_block_while_streaming() -> None:
    step = plan_edit(progress("```python\nx = 1\n"))
    assert step is not None and step.text == "```python\nx = 1\n```"


def test_edit_mode_waits_for_visible_text() -> None:
    assert plan_edit(progress(" \n\n ")) is None


def test_parts_mode_posts_nothing_until_a_part_is_complete_or_the_answer_ends() -> None:
    assert plan_parts(progress("Hello")) is None
    step = plan_parts(progress("Hello", closing=True))
    assert step is not None and (step.op, step.text) == (Op.SEND, "Hello")
    assert step.frozen is not None


def test_native_mode_starts_appends_and_stops_with_the_rest() -> None:
    start = plan_native(progress("Hello"))
    assert start is not None and (start.op, start.text, start.shown_end) == (Op.START, "Hello", 5)
    more = progress("Hello world", msg_id="m1", shown_end=5)
    append = plan_native(more)
    assert append is not None and (append.op, append.text) == (Op.APPEND, " world")
    stop = plan_native(progress("Hello world", msg_id="m1", shown_end=5, closing=True))
    assert stop is not None and (stop.op, stop.text) == (Op.STOP, " world")


def test_native_mode_posts_a_complete_answer_plainly_instead_of_streaming() -> None:
    step = plan_native(progress("Hello", closing=True))
    assert step is not None and (step.op, step.text) == (Op.SEND, "Hello")


def test_native_mode_holds_back_a_line_that_may_become_a_fence() -> None:
    step = plan_native(progress("Look:\n``"))
    assert step is not None and (step.op, step.text) == (Op.START, "Look:\n")


def test_a_note_that_does_not_fit_is_left_for_a_message_of_its_own() -> None:
    full = "x" * 95
    step = plan_edit(progress(full, closing=True, note=NOTE))
    assert step is not None and step.text == full and not step.with_note


def test_a_note_after_an_open_code_block_closes_it_first() -> None:
    fence = Fence("```", "py")
    step = plan_parts(progress("x = 1", fence=fence, closing=True, note=NOTE))
    assert step is not None and step.with_note
    assert step.text == "```py\nx = 1\n```\n\n" + NOTE


def test_step_kinds_know_their_pacing() -> None:
    assert {op for op in Op if op.opens} == {Op.SEND, Op.START}
    assert {op for op in Op if op.spaced} == {Op.EDIT, Op.APPEND, Op.CLOSE}
    assert Op.CLOSE.token == "stop" and Op.APPEND.token == "append"
    assert [mode.final_token for mode in Mode] == ["stop", "edit", None]
