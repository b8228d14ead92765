"""bot/sse.py: the stream's lines, however the network cuts them into pieces."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import sse

REQUEST = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
TEXTS = ["Hello", " 세계", ", naïve café ", "```py\nx = 1\n```", "🙂 done"]


class Pieces(httpx2.AsyncByteStream):
    """A body that arrives in the given pieces; optionally stalls or breaks after them."""

    def __init__(
        self, pieces: Sequence[bytes], *, stall: bool = False, error: Exception | None = None
    ) -> None:
        self.pieces = pieces
        self.stall = stall
        self.error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            await asyncio.sleep(0)
            yield piece
        if self.error is not None:
            raise self.error
        if self.stall:
            await asyncio.sleep(3600)


def body(texts: Sequence[str], newline: bytes = b"\n") -> bytes:
    """An OpenAI-style stream: role chunk, one chunk per text, usage, [DONE]."""
    events: list[dict[str, Any]] = [{"choices": [{"delta": {"role": "assistant", "content": ""}}]}]
    events += [{"choices": [{"delta": {"content": text}}]} for text in texts]
    events.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}})
    lines = [b"data: " + json.dumps(event, ensure_ascii=False).encode() for event in events]
    lines.append(b"data: [DONE]")
    return b"".join(line + newline + newline for line in lines)


def cut(data: bytes, points: Sequence[int]) -> list[bytes]:
    edges = [0, *sorted({p % (len(data) + 1) for p in points}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


async def read(stream: httpx2.AsyncByteStream) -> list[sse.Chunk]:
    response = httpx2.Response(200, stream=stream, request=REQUEST)
    return [chunk async for chunk in sse.chunks(response)]


def texts_of(chunks: list[sse.Chunk]) -> str:
    return "".join(sse.text_of(chunk) for chunk in chunks)


@settings(max_examples=150, deadline=None)
@given(
    points=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_any_cut_of_the_body_gives_the_same_chunks(points: list[int], newline: bytes) -> None:
    # Pieces may end mid-line and mid-character (the Korean and emoji are multi-byte).
    chunks = asyncio.run(read(Pieces(cut(body(TEXTS, newline), points))))
    assert texts_of(chunks) == "".join(TEXTS)
    assert sse.usage_of(chunks[-1]) == (3, 5)
    assert len(chunks) == len(TEXTS) + 2


async def test_comments_and_other_fields_are_skipped_and_a_last_line_needs_no_break() -> None:
    data = b': keep-alive\n\nevent: message\nid: 7\ndata: {"choices":[{"delta":{"content":"x"}}]}'
    chunks = await read(Pieces([data]))
    assert texts_of(chunks) == "x"


async def test_after_done_the_rest_is_read_but_a_stalling_server_is_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse, "DRAIN_AFTER_DONE_S", 0.05)
    extra = b'data: {"choices":[{"delta":{"content":"ignored"}}]}\n\n'
    stream = Pieces([body(["done"]), extra], stall=True)
    async with asyncio.timeout(2.0):
        chunks = await read(stream)
    assert texts_of(chunks) == "done"


async def test_a_line_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        await read(Pieces([b"data: {nope\n\n"]))
    with pytest.raises(ValueError):
        await read(Pieces([b"data: [1, 2]\n\n"]))
    with pytest.raises(ValueError):  # not UTF-8
        await read(Pieces([b'data: {"a": "\xff\xfe"}\n\n']))


async def test_an_error_event_is_an_api_error() -> None:
    event = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    with pytest.raises(openai.APIError, match="overloaded"):
        await read(Pieces([event]))


async def test_transport_errors_become_the_sdks_errors() -> None:
    first = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
    with pytest.raises(openai.APITimeoutError):
        await read(Pieces([first], error=httpx2.ReadTimeout("silent", request=REQUEST)))
    with pytest.raises(openai.APIConnectionError) as caught:
        await read(Pieces([first], error=httpx2.ReadError("reset", request=REQUEST)))
    assert not isinstance(caught.value, openai.APITimeoutError)
