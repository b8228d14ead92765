"""What bolt needs to start without its two spurious warnings.

We hand bolt an ``authorize`` function (who we are was checked once at start), so
bolt takes each request's token from it. Bolt then warns

1. "`token` (or SLACK_BOT_TOKEN env variable) will be ignored" when the client it
   is given carries a token: so it gets a client without one (same base URL,
   session, retries and logger); our own calls keep the client with the token.
2. "As you gave `client` as well, `token` will be unused" when SLACK_BOT_TOKEN is
   set in the environment, which bolt reads by itself whatever we pass. Nothing
   we can pass avoids that read, so this one exact message is dropped from the
   logger we give bolt; every other bolt warning still shows.
"""

from __future__ import annotations

import logging

from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient


def tokenless_twin(client: AsyncWebClient) -> AsyncWebClient:
    """``client`` without its token, for bolt: ``authorize`` supplies the token."""
    return AsyncWebClient(
        base_url=client.base_url,
        session=client.session,
        timeout=client.timeout,
        logger=client.logger,
        retry_handlers=list(client.retry_handlers),
    )


class EnvTokenNotice(logging.Filter):
    """Drops bolt's notice that it ignores SLACK_BOT_TOKEN read from the environment."""

    def __init__(self) -> None:
        super().__init__()
        self._text = warning_client_prioritized_and_token_skipped()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self._text


def bolt_logger(name: str) -> logging.Logger:
    """The logger bolt gets: ours, without the environment-token notice."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, EnvTokenNotice) for f in logger.filters):
        logger.addFilter(EnvTokenNotice())
    return logger
