"""The chat model: an OpenAI-compatible server streamed through the ``openai`` SDK.

One ``openai.AsyncOpenAI`` client (built by :func:`make_client`, SDK retries off) is
shared by every conversation. :class:`OpenAIChat` does its own retrying so it can

* stop at the answer's total deadline (``request_timeout_s``, retries included);
* give up on a call whose first text takes longer than ``first_token_timeout_s``;
* never retry once text was yielded (the user has already seen it);
* turn every failure into one :class:`~bot.errors.LLMError` kind.

Retried, before any text only: 429 (honouring Retry-After, capped), 408/409/5xx,
connection errors, timeouts, and - once - a malformed stream (see ``MALFORMED_RETRIES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx2
import openai
import orjson

from . import openai_compat, sse
from .config import NO_KEY_PLACEHOLDER
from .errors import LLMError, LLMErrorKind
from .reasoning import ReasoningEffort, ReasoningMode, ThinkStripper, request_shape
from .tool_calls import ToolCallAccumulator
from .types import Answer, ChatMessage, Usage

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # the SDK's own timeouts are a backstop; ours are tighter
BACKOFF_BASE_S = 0.5  # the first retry waits about this long, doubling after
BACKOFF_CAP_S = 8.0
RETRY_AFTER_CAP_S = 30.0  # a longer Retry-After is shortened to this (the deadline still rules)
# A malformed stream before any text (a data: line that is not JSON, an error event) is
# retried once: a proxy hiccup goes away, but a server that always answers in a format
# we cannot read would only burn the deadline on more attempts.
MALFORMED_RETRIES = 1
OPENAI_BASE_URL = "https://api.openai.com/v1"  # base_url None: OpenAI itself
DETAIL_MAX_CHARS = 300

# Which field carries the output limit. OpenAI (and Azure OpenAI) reasoning models reject
# the older ``max_tokens`` with 400 unsupported_parameter and want ``max_completion_tokens``.
# Most other OpenAI-compatible servers (Ollama, LM Studio, older llama.cpp and
# llama-cpp-python) only read ``max_tokens`` and silently ignore ``max_completion_tokens``,
# which would leave the answer unbounded; vLLM reads both. Sending both is no way out:
# OpenAI rejects ``max_tokens`` whenever it is present. So: ``max_completion_tokens`` for
# OpenAI's own hosts, ``max_tokens`` everywhere else, and if a server still rejects the
# one we sent (400 naming the parameter), we switch once and remember (see _adapt).
OPENAI_HOSTS = ("api.openai.com",)
OPENAI_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com")
# Delta fields in which OpenAI-compatible servers stream a reasoning model's thinking
# (vLLM/DeepSeek: reasoning_content; Ollama, newer vLLM: reasoning). Not shown to users,
# but their arrival proves the server is working, so they count as progress.
REASONING_FIELDS = ("reasoning_content", "reasoning")
# Request fields a server may reject as unsupported; we then stop sending (or swap) them.
ADAPTABLE_PARAMS = (
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "stream_options",
    "reasoning_effort",
)

_REJECTED = re.compile(r"unsupported|not supported|unrecognized|unknown|extra inputs", re.I)
_CONTEXT = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|too many tokens|prompt is too long",
    re.I,
)
_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_*-]{2})[A-Za-z0-9_*-]{6,}")

CHAT_PATH = "/chat/completions"  # under the client's base URL

TokenParam = Literal["max_tokens", "max_completion_tokens"]


class ClientSettings(Protocol):
    """What :func:`make_client` reads from ``cfg.openai``."""

    @property
    def api_key(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def request_timeout_s(self) -> float: ...


class ChatSettings(ClientSettings, Protocol):
    """What :meth:`OpenAIChat.from_config` reads from ``cfg.openai``."""

    @property
    def model(self) -> str: ...
    @property
    def temperature(self) -> float: ...
    @property
    def max_output_tokens(self) -> int: ...
    @property
    def first_token_timeout_s(self) -> float: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def reasoning(self) -> ReasoningMode: ...
    @property
    def reasoning_effort(self) -> ReasoningEffort: ...


def make_client(settings: ClientSettings) -> openai.AsyncOpenAI:
    """Build the one client of the process. Its own retries are off: OpenAIChat retries.

    ``settings`` are as config checked them: config read the environment and decided
    whether an empty key is allowed (bot/config.py), so nothing is read again here,
    and the SDK gets an explicit key and URL so that it does not read them either.
    """
    timeout = settings.request_timeout_s
    return openai.AsyncOpenAI(
        api_key=settings.api_key or NO_KEY_PLACEHOLDER,
        base_url=settings.base_url or OPENAI_BASE_URL,
        max_retries=0,
        timeout=openai.Timeout(timeout, connect=min(CONNECT_TIMEOUT_S, timeout)),
        # The SDK's aiohttp transport: its default one (httpcore over anyio) costs more
        # CPU per streamed answer and probes every idle pooled connection on each
        # request (PERFORMANCE.md, "One keep-alive connection, on aiohttp"). Proxies
        # from the environment still apply.
        http_client=openai.DefaultAioHttpClient(),
    )


def default_token_param(base_url: object) -> TokenParam:
    """The output-limit field to send to this server (see the note at OPENAI_HOSTS)."""
    host = (urlsplit(str(base_url)).hostname or "").lower()
    if host in OPENAI_HOSTS or host.endswith(OPENAI_HOST_SUFFIXES):
        return "max_completion_tokens"
    return "max_tokens"


@dataclass(frozen=True, slots=True)
class _Verdict:
    """How one failed attempt is judged."""

    kind: LLMErrorKind
    retryable: bool
    detail: str
    retry_after: float | None = None  # seconds the server asked us to wait
    malformed: bool = False  # counts against MALFORMED_RETRIES
    adapt: str | None = None  # a request field the server rejected as unsupported


class _AttemptFailed(Exception):
    """One attempt failed before any text was yielded (so it may be retried)."""

    def __init__(self, verdict: _Verdict) -> None:
        super().__init__(verdict.detail)
        self.verdict = verdict


class OpenAIChat:
    """:class:`bot.types.ChatModel` over one ``openai.AsyncOpenAI`` client."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        temperature: float,
        max_output_tokens: int,
        request_timeout_s: float,
        first_token_timeout_s: float,
        max_retries: int,
        token_param: TokenParam | None = None,
        reasoning: ReasoningMode = "auto",
        reasoning_effort: ReasoningEffort = "",
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        retry_after_cap_s: float = RETRY_AFTER_CAP_S,
    ) -> None:
        self._client = client
        self._model = model
        self._temperature = temperature
        self._max_output_tokens = max_output_tokens
        self._request_timeout_s = request_timeout_s
        self._first_token_timeout_s = first_token_timeout_s
        self._max_retries = max(0, max_retries)
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._retry_after_cap_s = retry_after_cap_s
        # Request shape (bot/reasoning.py); _adapt changes it when a server rejects a
        # field. One instance asks one model, so what it learns is per model.
        default = default_token_param(client.base_url)
        shape = request_shape(
            model, reasoning, reasoning_effort, openai_host=default == "max_completion_tokens"
        )
        self._token_param: TokenParam | None = token_param or (
            "max_completion_tokens" if shape.completion_tokens else "max_tokens"
        )
        self._send_temperature = shape.temperature
        self._effort: ReasoningEffort = shape.effort
        self._send_stream_options = True
        self._adapted: set[str] = set()
        # Absolute: the SDK then takes the URL as it is instead of joining it to its
        # base URL on every request (two URL parses and a copy).
        self._chat_url = str(client.base_url).rstrip("/") + CHAT_PATH
        # The read timeout bounds the silence between two chunks (see _silence_limit).
        self._http_timeout = openai.Timeout(
            request_timeout_s,
            connect=min(CONNECT_TIMEOUT_S, request_timeout_s),
            read=first_token_timeout_s,
        )

    @classmethod
    def from_config(cls, client: openai.AsyncOpenAI, settings: ChatSettings) -> OpenAIChat:
        """Build from ``cfg.openai``."""
        return cls(
            client,
            model=settings.model,
            temperature=settings.temperature,
            max_output_tokens=settings.max_output_tokens,
            request_timeout_s=settings.request_timeout_s,
            first_token_timeout_s=settings.first_token_timeout_s,
            max_retries=settings.max_retries,
            reasoning=settings.reasoning,
            reasoning_effort=settings.reasoning_effort,
        )

    async def stream(
        self, messages: list[ChatMessage], answer: Answer
    ) -> AsyncGenerator[str, None]:
        """Yield text deltas of one answer, filling ``answer``; raise LLMError on failure.

        Consume it under ``contextlib.aclosing`` so that leaving early closes the
        HTTP stream at once; cancellation closes it too.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._request_timeout_s
        attempts = retries = 0
        malformed_left = MALFORMED_RETRIES
        adapted_here: set[str] = set()  # a field rejected again after adapting is final
        while True:
            attempts += 1
            try:
                async with contextlib.aclosing(self._attempt(messages, answer, deadline)) as deltas:
                    async for delta in deltas:
                        yield delta
                return
            except _AttemptFailed as failed:
                verdict = failed.verdict
            if verdict.adapt and verdict.adapt not in adapted_here and self._adapt(verdict):
                adapted_here.add(verdict.adapt)
                continue
            delay = self._retry_delay(verdict, retries, malformed_left, deadline - loop.time())
            if delay is None:
                log.warning(
                    "model call failed for good (%s) after %d attempt(s): %s",
                    verdict.kind,
                    attempts,
                    verdict.detail,
                )
                raise LLMError(verdict.kind, verdict.detail)
            retries += 1
            malformed_left -= verdict.malformed
            log.warning(
                "model call attempt %d failed (%s), retrying in %.2fs: %s",
                attempts,
                verdict.kind,
                delay,
                verdict.detail,
            )
            await asyncio.sleep(delay)

    # -- one attempt -------------------------------------------------------------------

    async def _attempt(
        self, messages: list[ChatMessage], answer: Answer, deadline: float
    ) -> AsyncGenerator[str, None]:
        """One request. Raises _AttemptFailed before any text, LLMError after."""
        loop = asyncio.get_running_loop()
        first_by = min(deadline, loop.time() + self._first_token_timeout_s)
        answer.tool_calls = None  # a retried attempt starts its tool calls afresh
        response = await self._open(messages, first_by, deadline, answer)
        request_id = response.headers.get("x-request-id") or "-"
        stream = sse.chunks(response)
        got_text = thinking = False
        stripper = ThinkStripper()  # <think> spans are progress, never answer text
        try:
            while True:
                # Before the first text: the first-token deadline. After it (or once a
                # reasoning model shows it is thinking): the same span as the longest
                # allowed silence between chunks, always within the total deadline.
                limit = self._silence_limit(loop, deadline) if got_text or thinking else first_by
                try:
                    chunk = await self._next_chunk(stream, limit, deadline, request_id)
                except _AttemptFailed as failed:
                    if not got_text:
                        raise
                    raise self._interrupted(failed.verdict, answer) from failed.__cause__
                if chunk is None:
                    if tail := stripper.finish().visible:
                        answer.text += tail
                        yield tail
                    return
                split = stripper.feed(self._take(chunk, answer, request_id))
                if split.visible:
                    got_text = True
                    answer.text += split.visible
                    yield split.visible
                elif split.thinking or (thought := sse.text_of_any(chunk, REASONING_FIELDS)):
                    thinking = True
                    stripper.keep("" if split.thinking else thought)
                    answer.reasoning = stripper.thinking
                if answer.tools and _took_tool_calls(chunk, answer):
                    thinking = True  # a tool call is progress too
        finally:
            # Runs on success, failure, aclose() and cancellation alike: closing the
            # response drops the connection if the body was not read to the end.
            await stream.aclose()
            await response.aclose()

    async def _open(
        self, messages: list[ChatMessage], first_by: float, deadline: float, answer: Answer
    ) -> httpx2.Response:
        try:
            async with asyncio.timeout_at(first_by):
                return await self._send(messages, answer.tools)
        except TimeoutError as exc:
            raise _AttemptFailed(self._timeout(first_by, deadline, "-")) from exc
        except openai.APIError as exc:
            raise _AttemptFailed(_classify(exc, "-", self._client.api_key)) from exc

    async def _send(
        self, messages: list[ChatMessage], tools: Sequence[Mapping[str, Any]] = ()
    ) -> httpx2.Response:
        """Send the request; the streamed response, its body not read yet.

        The SDK builds and sends the request, authenticates it and raises its usual
        errors for a failed status; the body is read by bot/sse.py as plain dicts.
        The call goes through bot/openai_compat.py rather than
        ``chat.completions.create``, which walks every parameter through its type
        transforms on each call and would parse each chunk into an object. The body
        is bytes made by orjson, which the SDK sends as they are (PERFORMANCE.md,
        "The model stream is read without the SDK's objects").
        """
        limit = self._max_output_tokens if self._max_output_tokens > 0 else None
        body: dict[str, Any] = {"model": self._model, "messages": messages, "stream": True}
        if self._send_stream_options:
            body["stream_options"] = {"include_usage": True}
        if self._send_temperature:
            body["temperature"] = self._temperature
        if limit and self._token_param is not None:
            body[self._token_param] = limit
        if self._effort:
            body["reasoning_effort"] = self._effort
        if tools:  # function tools (bot/tool_loop.py); the calls come back in the stream
            body["tools"] = list(tools)
        return await openai_compat.post_stream(
            self._client, self._chat_url, _encode(body), self._http_timeout
        )

    def _silence_limit(self, loop: asyncio.AbstractEventLoop, deadline: float) -> float | None:
        """When the wait for the next chunk ends; None: the transport's read timeout.

        Each request sets the HTTP read timeout to the longest allowed silence, so
        only near the total deadline does a chunk need a timer of its own (one per
        chunk was a twentieth of an answer's CPU).
        """
        if loop.time() + self._first_token_timeout_s < deadline:
            return None
        return deadline

    async def _next_chunk(
        self,
        stream: AsyncGenerator[sse.Chunk, None],
        limit: float | None,
        deadline: float,
        request_id: str,
    ) -> sse.Chunk | None:
        """The next chunk as a dict, None at the end of the stream."""
        try:
            if limit is None:
                return await anext(stream)
            async with asyncio.timeout_at(limit):
                return await anext(stream)
        except StopAsyncIteration:
            return None
        except (TimeoutError, openai.APITimeoutError) as exc:
            # Our timer at `limit`, or the transport's read timeout (the allowed
            # silence) when there was none.
            fired = limit if limit is not None else asyncio.get_running_loop().time()
            raise _AttemptFailed(self._timeout(fired, deadline, request_id)) from exc
        except openai.APIError as exc:  # broken connection, or an error event in the stream
            raise _AttemptFailed(_classify(exc, request_id, self._client.api_key)) from exc
        except ValueError as exc:  # a data: line that is not JSON (or not UTF-8)
            raise _AttemptFailed(_malformed(request_id, f"{type(exc).__name__}: {exc}")) from exc

    def _take(self, chunk: sse.Chunk, answer: Answer, request_id: str) -> str:
        """Record usage; return the chunk's text (servers differ: read defensively)."""
        usage = sse.usage_of(chunk)
        if usage is not None:
            answer.usage = Usage(prompt_tokens=usage[0], completion_tokens=usage[1])
        if sse.finish_reason(chunk) == "length":
            log.info("answer hit max_output_tokens (request_id=%s)", request_id)
        return sse.text_of(chunk)

    # -- verdicts ----------------------------------------------------------------------

    def _timeout(self, limit: float, deadline: float, request_id: str) -> _Verdict:
        if limit >= deadline:
            return _Verdict(
                "timeout",
                False,
                f"no answer within the total deadline of {self._request_timeout_s:g}s "
                f"(request_id={request_id})",
            )
        return _Verdict(
            "timeout",
            True,
            f"no text within {self._first_token_timeout_s:g}s (request_id={request_id})",
        )

    def _interrupted(self, verdict: _Verdict, answer: Answer) -> LLMError:
        detail = f"stream broke after {len(answer.text)} chars: {verdict.detail}"
        log.warning("model stream interrupted: %s", detail)
        return LLMError("interrupted", detail)

    def _retry_delay(
        self, verdict: _Verdict, retries: int, malformed_left: int, remaining: float
    ) -> float | None:
        """Seconds to wait before the next attempt, None to give up now."""
        if not verdict.retryable or retries >= self._max_retries:
            return None
        if verdict.malformed and malformed_left <= 0:
            return None
        step = min(self._backoff_cap_s, self._backoff_base_s * 2**retries)
        delay = step / 2 + random.uniform(0, step / 2)  # jitter spreads out retry bursts
        if verdict.retry_after is not None:
            delay = max(delay, min(verdict.retry_after, self._retry_after_cap_s))
        # Waiting past the deadline would only end in a timeout: report the real cause now.
        return delay if delay < remaining else None

    def _adapt(self, verdict: _Verdict) -> bool:
        """Stop sending (or swap) a field the server rejected; True if worth retrying."""
        param = verdict.adapt
        if param is None or not self._sends(param):
            return param is not None  # another call already adapted: just retry
        if param in self._adapted:
            return False
        self._adapted.add(param)
        if param == "temperature":
            self._send_temperature = False
        elif param == "stream_options":
            self._send_stream_options = False  # usage will then be unknown
        elif param == "reasoning_effort":
            self._effort = ""
        else:
            other: TokenParam = "max_completion_tokens" if param == "max_tokens" else "max_tokens"
            self._token_param = None if other in self._adapted else other
        log.warning(
            "the server rejected %r; sending requests without it from now on (%s)",
            param,
            verdict.detail,
        )
        return True

    def _sends(self, param: str) -> bool:
        if param == "temperature":
            return self._send_temperature
        if param == "stream_options":
            return self._send_stream_options
        if param == "reasoning_effort":
            return bool(self._effort)
        return self._token_param == param


def _took_tool_calls(chunk: sse.Chunk, answer: Answer) -> bool:
    """Add the chunk's tool-call fragments to ``answer``; True if it had any."""
    if answer.tool_calls is None:
        answer.tool_calls = ToolCallAccumulator()
    return answer.tool_calls.add_chunk(chunk)


def _encode(body: dict[str, Any]) -> bytes:
    """The request body as JSON bytes. A lone surrogate (from a platform's JSON
    escape such as ``\\ud83d`` with no pair) cannot be UTF-8: it becomes "?"."""
    try:
        return orjson.dumps(body)
    except TypeError:  # orjson.JSONEncodeError; only lone surrogates here (plain dicts)
        return json.dumps(body, ensure_ascii=False).encode("utf-8", errors="replace")


def _classify(exc: openai.APIError, request_id: str, secret: str) -> _Verdict:
    """Judge an SDK error: which kind, and whether another attempt may help."""
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc, secret)
    if isinstance(exc, openai.APITimeoutError) and _timed_out(exc):
        return _Verdict("timeout", True, f"HTTP client timeout (request_id={request_id})")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause else exc.message
        return _Verdict(
            "unavailable", True, _redact(f"connection error: {reason}", secret, request_id)
        )
    # Any other APIError is an error event inside a 200 stream: data: {"error": {...}}.
    detail = _redact(f"error event in stream: {exc.message}", secret, request_id)
    if _CONTEXT.search(f"{exc.code} {exc.message}"):
        return _Verdict("context_too_long", False, detail)
    return _Verdict("unavailable", True, detail, malformed=True)


def _timed_out(exc: BaseException) -> bool:
    """Whether a real timeout is behind ``exc``: the SDK's aiohttp transport reports a
    refused or dropped connection as a connect timeout too."""
    cause: BaseException | None = exc.__cause__
    while cause is not None:
        if isinstance(cause, TimeoutError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _classify_status(exc: openai.APIStatusError, secret: str) -> _Verdict:
    status, code, message = exc.status_code, exc.code or "", exc.message
    detail = _redact(f"HTTP {status} code={code or '-'}: {message}", secret, exc.request_id)
    retry_after = _retry_after(exc.response.headers)
    if status == 429:
        # insufficient_quota is an empty billing account, not a burst: waiting won't help.
        return _Verdict("rate_limited", code != "insufficient_quota", detail, retry_after)
    if status in (401, 403):
        return _Verdict("auth", False, detail)
    if status == 408:
        return _Verdict("timeout", True, detail, retry_after)
    if status == 409 or status >= 500:
        return _Verdict("unavailable", True, detail, retry_after)
    if status == 413 or _CONTEXT.search(f"{code} {message}"):
        return _Verdict("context_too_long", False, detail)
    if status == 404:  # a setting is wrong, not the message: rephrasing cannot help
        return _Verdict("not_found", False, detail)
    if 400 <= status < 500:
        return _Verdict("bad_request", False, detail, adapt=_rejected_param(exc))
    return _Verdict("unavailable", True, detail)


def _rejected_param(exc: openai.APIStatusError) -> str | None:
    """The request field a 4xx says is unsupported, if it is one we can drop or swap."""
    text = f"{exc.code or ''} {exc.message}"
    if not _REJECTED.search(text):
        return None
    if exc.param in ADAPTABLE_PARAMS:
        return exc.param
    named = [p for p in ADAPTABLE_PARAMS if re.search(rf"\b{p}\b", exc.message)]
    return named[0] if named else None


def _malformed(request_id: str, what: str) -> _Verdict:
    detail = f"malformed stream: {what} (request_id={request_id})"[:DETAIL_MAX_CHARS]
    return _Verdict("unavailable", True, detail, malformed=True)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    with contextlib.suppress(ValueError):
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def _redact(text: str, secret: str, request_id: str | None) -> str:
    """Bound a detail for the log, without the API key or anything shaped like one."""
    if secret and len(secret) >= 8:
        text = text.replace(secret, "[redacted]")
    text = _KEYLIKE.sub(r"\1…", text)
    return f"{text[:DETAIL_MAX_CHARS]} (request_id={request_id or '-'})"
