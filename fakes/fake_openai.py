"""A scriptable OpenAI Chat Completions server on loopback, for tests and benchmarks.

The real ``openai`` SDK talks to it over HTTP. Each request takes the next
scripted :class:`Behaviour` from a queue (or the default one) and the server
records what it received, so tests can assert on request bodies and headers.

Three ways to run it:

* pytest: ``async with FakeOpenAI() as fake:`` (see ``fakes/fixtures.py``);
* a benchmark script: the same ``async with``, then ``fake.base_url``;
* its own process: ``python -m fakes.fake_openai --port 0 --ttft-ms 50 --chunks 20
  --chunk-interval-ms 5`` prints ``listening on http://127.0.0.1:PORT``, then the
  ``OPENAI_BASE_URL`` to give the bot, and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes.served import Served

HOST = "127.0.0.1"
DEFAULT_MODEL = "fake-model"
DEFAULT_TEXT = "Hello from the fake model. This answer is streamed in small pieces."
SHUTDOWN_TIMEOUT_S = 0.25
WAIT_LIMIT_S = 5.0
GARBAGE_JSON = b"data: {this is not json\n\n"
GARBAGE_LINE = b"this line is not a server-sent event field\n"

JsonDict = dict[str, Any]
ReplyFn = Callable[[JsonDict], str]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What the server does for one request. ``None`` fields use the server defaults."""

    text: str | ReplyFn | None = None  # None: the server's reply_fn, else DEFAULT_TEXT
    status: int = 200
    error: JsonDict | None = None  # OpenAI-style error object, sent when status != 200
    headers: Mapping[str, str] = field(default_factory=dict)  # extra response headers
    headers_delay_s: float = 0.0  # wait before sending the response status and headers
    ttft_s: float | None = None  # wait between the headers and the first text chunk
    chunks: int | None = None  # how many pieces the text is split into
    chunk_interval_s: float | None = None
    drop_after: int | None = None  # close the connection after this many text chunks
    garbage_after: int | None = None  # write `garbage` after this many text chunks
    garbage: bytes = GARBAGE_JSON
    usage: tuple[int, int] | None = None  # (prompt, completion); None: rough word counts
    # False: no usage chunk even when stream_options.include_usage asks for one, as
    # some OpenAI-compatible servers do (the bot then counts tokens itself).
    send_usage: bool = True
    finish_reason: str = "stop"
    end_after_done_s: float = 0.0  # wait between "data: [DONE]" and the body's end
    # Reasoning deltas sent before the text, one every thinking_interval_s, the way
    # vLLM ("reasoning_content") and Ollama ("reasoning") stream a thinking model.
    thinking: tuple[str, ...] = ()
    thinking_interval_s: float = 0.0
    thinking_field: str = "reasoning_content"
    gzip: bool = False  # compress the stream (Content-Encoding: gzip), as some proxies do
    # Function calls streamed after the text (see tool_calls()); their arguments are
    # sent in TOOL_ARGUMENT_PIECES fragments, as real servers do.
    tool_calls: tuple[FakeToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """One function call the fake model makes; ``arguments`` is sent as it is."""

    name: str
    arguments: str
    id: str = ""


TOOL_ARGUMENT_PIECES = 3


def tool_calls(*calls: tuple[str, Any], text: str = "") -> Behaviour:
    """A round in which the model calls tools: (name, arguments) pairs, where
    arguments is a dict (sent as JSON) or a string (sent as it is, e.g. malformed)."""
    made = tuple(
        FakeToolCall(name, args if isinstance(args, str) else json.dumps(args), f"call_{i}")
        for i, (name, args) in enumerate(calls)
    )
    return Behaviour(text=text, tool_calls=made, finish_reason="tool_calls")


def reply(text: str | ReplyFn, **kw: Any) -> Behaviour:
    """A normal streamed (or JSON) answer."""
    return Behaviour(text=text, **kw)


def error(status: int, message: str, *, type_: str, code: str | None, **kw: Any) -> Behaviour:
    """An HTTP error with an OpenAI-style JSON body."""
    body = {"message": message, "type": type_, "param": kw.pop("param", None), "code": code}
    return Behaviour(status=status, error=body, **kw)


def rate_limited(retry_after_s: float | None = 1.0, **kw: Any) -> Behaviour:
    """429 with a Retry-After header (seconds), like OpenAI's rate limiter."""
    headers = {} if retry_after_s is None else {"Retry-After": _fmt_seconds(retry_after_s)}
    headers.update(kw.pop("headers", {}))
    return error(
        429,
        "Rate limit reached for requests. Please try again later.",
        type_="requests",
        code="rate_limit_exceeded",
        headers=headers,
        **kw,
    )


def server_error(status: int = 500, **kw: Any) -> Behaviour:
    """A 5xx with an OpenAI-style body."""
    return error(status, "The server had an error.", type_="server_error", code=None, **kw)


def context_too_long(**kw: Any) -> Behaviour:
    """400 context_length_exceeded, worded like OpenAI's."""
    message = (
        "This model's maximum context length is 8192 tokens. However, your messages "
        "resulted in 9000 tokens. Please reduce the length of the messages."
    )
    return error(
        400,
        message,
        type_="invalid_request_error",
        code="context_length_exceeded",
        param="messages",
        **kw,
    )


def unauthorized(**kw: Any) -> Behaviour:
    """401 invalid_api_key."""
    return error(
        401,
        "Incorrect API key provided: sk-test****************1234.",
        type_="invalid_request_error",
        code="invalid_api_key",
        **kw,
    )


def unsupported_parameter(param: str, **kw: Any) -> Behaviour:
    """400 unsupported_parameter, as OpenAI answers max_tokens for reasoning models."""
    message = f"Unsupported parameter: '{param}' is not supported with this model."
    return error(
        400,
        message,
        type_="invalid_request_error",
        code="unsupported_parameter",
        param=param,
        **kw,
    )


def slow_first_token(delay_s: float, text: str | None = None, **kw: Any) -> Behaviour:
    """Headers at once, then nothing for ``delay_s`` before the first text."""
    return Behaviour(text=text, ttft_s=delay_s, **kw)


def dropped(after_chunks: int, text: str | None = None, **kw: Any) -> Behaviour:
    """Stream ``after_chunks`` pieces, then close the connection mid-body."""
    return Behaviour(text=text, drop_after=after_chunks, **kw)


def malformed(
    after_chunks: int, text: str | None = None, garbage: bytes = GARBAGE_JSON
) -> Behaviour:
    """Insert ``garbage`` (by default a data: line with invalid JSON) after some chunks."""
    return Behaviour(text=text, garbage_after=after_chunks, garbage=garbage)


def echo_last_user(body: JsonDict) -> str:
    """Reply function: answer with the last user message (handy to check history)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    json: JsonDict | None
    peer: object = None  # the client's (host, port): one per TCP connection


class FakeOpenAI(Served):
    """The fake server. Use as ``async with FakeOpenAI() as fake: fake.base_url``."""

    def __init__(
        self,
        *,
        ttft_s: float = 0.0,
        chunks: int = 4,
        chunk_interval_s: float = 0.0,
        default: Behaviour | None = None,
        reply_fn: ReplyFn | None = None,
        model: str = DEFAULT_MODEL,
        record: bool = True,
        port: int = 0,
    ) -> None:
        self.ttft_s = ttft_s
        self.chunks = chunks
        self.chunk_interval_s = chunk_interval_s
        self.default = default or Behaviour()
        self.reply_fn = reply_fn
        self.model = model
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.request_count = 0  # counted even when not recording
        self.completed = 0  # streams/JSON bodies sent in full
        self.disconnects = 0  # clients that went away before the body was complete
        self.streaming = 0  # streamed answers in progress now
        self.max_streaming = 0  # the most that were ever in progress at once
        # Streams send their headers, then wait here before any text: clear() it to
        # hold every answer (a blocked model), set() it to let them all go on.
        self.gate = asyncio.Event()
        self.gate.set()
        self._script: deque[Behaviour] = deque()
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._port = port
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[Any]] = set()  # cancelled on close, not awaited
        self.base_url = ""

    # -- scripting -----------------------------------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each request consumes one, then the default applies."""
        self._script.extend(behaviours)

    @property
    def pending(self) -> int:
        """Scripted behaviours not consumed yet."""
        return len(self._script)

    @property
    def chat_requests(self) -> list[JsonDict]:
        """Bodies of the recorded chat completion requests, in order."""
        return [r.json or {} for r in self.requests if r.path.endswith("/chat/completions")]

    async def wait_for(self, predicate: Callable[[FakeOpenAI], bool]) -> None:
        """Wait until ``predicate(self)`` holds (re-checked after every request event).

        Gives up with TimeoutError after WAIT_LIMIT_S, so a broken test cannot hang.
        """
        async with asyncio.timeout(WAIT_LIMIT_S), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Bind 127.0.0.1 (a free port unless one was given) and start serving."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S, handle_signals=False
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self._port))
        site = web.SockSite(self._runner, sock, backlog=1024)
        await site.start()
        self.port = sock.getsockname()[1]
        self.base_url = f"http://{HOST}:{self.port}"

    async def close(self) -> None:
        """Stop serving; handlers still sleeping are cancelled."""
        for task in list(self._handlers):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers ------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        await self._note(request, None)
        entry = {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}
        return web.json_response({"object": "list", "data": [entry]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - aiohttp always runs handlers in a task
            return await self._chat_inner(request)
        self._handlers.add(task)
        try:
            return await self._chat_inner(request)
        finally:
            self._handlers.discard(task)

    async def _chat_inner(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        await self._note(request, body if isinstance(body, dict) else None)
        if not isinstance(body, dict):
            return _error_response(400, "We could not parse the JSON body of your request.")
        plan = self._script.popleft() if self._script else self.default
        request_id = f"req_fake_{next(self._ids)}"
        if plan.headers_delay_s:
            await asyncio.sleep(plan.headers_delay_s)
        if plan.status != 200:
            headers = {"x-request-id": request_id, **plan.headers}
            return web.json_response({"error": plan.error}, status=plan.status, headers=headers)
        text = self._text_for(plan, body)
        if body.get("stream"):
            return await self._stream(request, plan, body, text, request_id)
        await self._sleep(self._pick(plan.ttft_s, self.ttft_s))
        await self._bump("completed")
        return web.json_response(
            self._completion(body, text, plan), headers={"x-request-id": request_id, **plan.headers}
        )

    async def _stream(
        self, request: web.Request, plan: Behaviour, body: JsonDict, text: str, request_id: str
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "x-request-id": request_id,
                **plan.headers,
            }
        )
        if plan.gzip:
            resp.enable_compression(web.ContentCoding.gzip)
        await resp.prepare(request)
        self.streaming += 1
        self.max_streaming = max(self.max_streaming, self.streaming)
        try:
            await self._notify_changed()
            await self.gate.wait()
            return await self._stream_body(request, resp, plan, body, text)
        finally:
            self.streaming -= 1

    async def _notify_changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _stream_body(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        plan: Behaviour,
        body: JsonDict,
        text: str,
    ) -> web.StreamResponse:
        request_id = resp.headers["x-request-id"]
        include_usage = plan.send_usage and bool(
            (body.get("stream_options") or {}).get("include_usage")
        )
        frames = _Frames(f"chatcmpl-{request_id}", body.get("model") or self.model, include_usage)
        pieces = _split(text, self._pick(plan.chunks, self.chunks))
        interval = self._pick(plan.chunk_interval_s, self.chunk_interval_s)
        try:
            await resp.write(frames.role())
            for thought in plan.thinking:
                await self._sleep(plan.thinking_interval_s)
                await resp.write(frames.delta({plan.thinking_field: thought}))
            await self._sleep(self._pick(plan.ttft_s, self.ttft_s))
            for index, piece in enumerate(pieces):
                if index and interval:
                    await asyncio.sleep(interval)
                if plan.garbage_after == index:
                    await resp.write(plan.garbage)
                if plan.drop_after == index:
                    return await self._drop(request, resp)
                await resp.write(frames.content(piece))
            if plan.garbage_after is not None and plan.garbage_after >= len(pieces):
                await resp.write(plan.garbage)
            if plan.drop_after is not None and plan.drop_after >= len(pieces):
                return await self._drop(request, resp)
            for index, call in enumerate(plan.tool_calls):
                for fragment in _call_fragments(index, call):
                    await resp.write(frames.delta({"tool_calls": [fragment]}))
            await resp.write(frames.finish(plan.finish_reason))
            if include_usage:
                await resp.write(frames.usage(*self._usage(body, text, plan)))
            await resp.write(b"data: [DONE]\n\n")
            await self._sleep(plan.end_after_done_s)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            # The client went away (aiohttp raises ClientConnectionResetError, a
            # ConnectionResetError, or RuntimeError on a closing transport).
            await self._bump("disconnects")
            return resp
        await self._bump("completed")
        return resp

    async def _drop(self, request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        """Close the socket without the terminating chunk: a mid-stream break."""
        transport = request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then closes
        resp.force_close()
        return resp

    # -- helpers -------------------------------------------------------------------

    async def _note(self, request: web.Request, body: JsonDict | None) -> None:
        self.request_count += 1
        if self.record:
            self.requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    dict(request.headers),
                    body,
                    request.transport.get_extra_info("peername") if request.transport else None,
                )
            )
        async with self._changed:
            self._changed.notify_all()

    async def _bump(self, counter: str) -> None:
        setattr(self, counter, getattr(self, counter) + 1)
        async with self._changed:
            self._changed.notify_all()

    def _text_for(self, plan: Behaviour, body: JsonDict) -> str:
        if plan.tool_calls and plan.text is None:
            return ""
        source = plan.text if plan.text is not None else self.reply_fn
        if source is None:
            return DEFAULT_TEXT
        return source(body) if callable(source) else source

    def _completion(self, body: JsonDict, text: str, plan: Behaviour) -> JsonDict:
        prompt, completion = self._usage(body, text, plan)
        return {
            "id": f"chatcmpl-{self.request_count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": plan.finish_reason,
                }
            ],
            "usage": _usage_obj(prompt, completion),
        }

    @staticmethod
    def _usage(body: JsonDict, text: str, plan: Behaviour) -> tuple[int, int]:
        if plan.usage is not None:
            return plan.usage
        prompt = sum(len(str(m.get("content", "")).split()) + 4 for m in body.get("messages") or [])
        return prompt, len(text.split())

    @staticmethod
    def _pick(value: Any, fallback: Any) -> Any:
        return fallback if value is None else value

    @staticmethod
    async def _sleep(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


class _Frames:
    """Builds the SSE frames of one streamed completion."""

    __slots__ = ("_head", "_tail")

    def __init__(self, completion_id: str, model: str, include_usage: bool) -> None:
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time())}
        head["model"] = model
        self._head = json.dumps(head, separators=(",", ":"))[:-1]
        self._tail = ',"usage":null}' if include_usage else "}"

    def _frame(self, choices: str, tail: str | None = None) -> bytes:
        return f'data: {self._head},"choices":{choices}{tail or self._tail}\n\n'.encode()

    def role(self) -> bytes:
        return self._frame(
            '[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]'
        )

    def delta(self, fields: JsonDict) -> bytes:
        delta = json.dumps(fields, separators=(",", ":"))
        return self._frame(f'[{{"index":0,"delta":{delta},"finish_reason":null}}]')

    def content(self, piece: str) -> bytes:
        delta = json.dumps(piece)
        return self._frame(f'[{{"index":0,"delta":{{"content":{delta}}},"finish_reason":null}}]')

    def finish(self, reason: str) -> bytes:
        return self._frame(f'[{{"index":0,"delta":{{}},"finish_reason":{json.dumps(reason)}}}]')

    def usage(self, prompt: int, completion: int) -> bytes:
        return self._frame("[]", f',"usage":{json.dumps(_usage_obj(prompt, completion))}}}')


def _call_fragments(index: int, call: FakeToolCall) -> list[JsonDict]:
    """One call as a real server streams it: id and name first, then argument pieces."""
    head: JsonDict = {
        "index": index,
        "id": call.id or f"call_{index}",
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }
    pieces = _split(call.arguments, TOOL_ARGUMENT_PIECES) if call.arguments else []
    return [head] + [{"index": index, "function": {"arguments": p}} for p in pieces]


def _usage_obj(prompt: int, completion: int) -> JsonDict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _split(text: str, parts: int) -> list[str]:
    """Split text into at most ``parts`` non-empty pieces of similar length."""
    parts = max(1, min(parts, len(text)))
    size = len(text)
    pieces = [text[i * size // parts : (i + 1) * size // parts] for i in range(parts)]
    return [p for p in pieces if p]


def _fmt_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _error_response(status: int, message: str) -> web.Response:
    body = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return web.json_response({"error": body}, status=status)


# -- separate process ----------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fake OpenAI chat completions server.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-interval-ms", type=float, default=5.0)
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--echo", action="store_true", help="answer with the last user message")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(
        ttft_s=args.ttft_ms / 1000,
        chunks=args.chunks,
        chunk_interval_s=args.chunk_interval_ms / 1000,
        default=Behaviour(text=None if args.echo else args.text),
        reply_fn=echo_last_user if args.echo else None,
        model=args.model,
        record=False,  # a long benchmark would otherwise grow without bound
        port=args.port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(f"listening on {fake.base_url}", flush=True)
        # What to point the bot at: the API lives under /v1, as OpenAI's does.
        print(f"OPENAI_BASE_URL={fake.base_url}/v1", flush=True)
        await stop.wait()
    print(f"served {fake.request_count} requests", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m fakes.fake_openai``."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()


__all__ = [
    "Behaviour",
    "FakeOpenAI",
    "RecordedRequest",
    "context_too_long",
    "dropped",
    "echo_last_user",
    "error",
    "malformed",
    "rate_limited",
    "reply",
    "server_error",
    "slow_first_token",
    "unauthorized",
    "unsupported_parameter",
]
