"""The console prints a model's text; it never lets the terminal act on it."""

from __future__ import annotations

import io

from adapters.console import ConsoleSink

ANSWER = "plain \x1b[2J\x1b]0;TITLE\x07 \x9b31m\x1b[31mred\x1b[0m\rend\tok"


async def test_terminal_control_characters_in_an_answer_are_not_printed() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out, "answer: ")
    stream = await sink.stream_start(ANSWER[:9])
    await sink.stream_append(stream, ANSWER[9:])
    await sink.stream_stop(stream)
    await sink.send("line\x1b[1Atwo\nthree")
    shown = out.getvalue()
    assert not any(c in shown for c in "\x1b\x07\x9b\r")
    assert shown == ("answer: plain [2J]0;TITLE 31m[31mred[0mend\tok\nanswer: line[1Atwo\nthree\n")
