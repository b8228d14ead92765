"""The one place that calls the openai SDK below its typed resources.

``bot/llm.py`` sends a chat request through the client's generic ``post`` instead of
``chat.completions.create``: the SDK still builds, authenticates and sends it, applies
the timeout and raises its usual errors, but does not walk every parameter through its
type transforms, and hands back the raw, unread response for ``bot/sse.py`` to read
(PERFORMANCE.md, "The model stream is read without the SDK's objects"). ``post``,
its ``options`` keys (``security``, ``timeout``) and ``cast_to=httpx2.Response`` are
how the SDK's own resources call it, not a documented contract.

Written against openai :data:`WRITTEN_AGAINST` (the pin in requirements.txt).
``tests/test_compat.py`` checks the shape used here and names the installed version
when it changed: after an upgrade, that file fails and nothing else should.
"""

from __future__ import annotations

from typing import Any, cast

import httpx2
import openai

DISTRIBUTION = "openai"
WRITTEN_AGAINST = "3.57.0"


async def post_stream(
    client: openai.AsyncOpenAI, url: str, content: bytes, http_timeout: openai.Timeout
) -> httpx2.Response:
    """POST ``content`` (a JSON body, sent as it is) to ``url``; the streamed
    response with its body not read yet. A failed status raises the SDK's error."""
    response = await client.post(
        url,
        cast_to=httpx2.Response,  # the SDK hands back the raw, unread response
        content=content,
        # The API key as a bearer token, as the SDK's own chat resource asks for it.
        options={"security": {"bearer_auth": True}, "timeout": http_timeout},
        stream=True,
        stream_cls=openai.AsyncStream[Any],
    )
    return cast(httpx2.Response, response)
