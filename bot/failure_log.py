"""One log line per stretch of a repeating failure, not one per try.

A heartbeat or a buffered write retries every second or so; on a full disk or a
database that is down, a line per try buries everything else in the log (and, in
the console, the conversation). :class:`FailureLog` writes the first failure,
then at most one line a minute while it lasts, with how many tries it left out,
and one line when the operation works again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REPEAT_EVERY_S = 60.0


class FailureLog:
    """Logs the failures of one repeated operation, ``what``, at a bounded rate."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        level: int = logging.WARNING,
        every_s: float = REPEAT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._level = level
        self._every_s = every_s
        self._clock = clock
        self._since: float | None = None  # when the current stretch of failures began
        self._logged_at = 0.0
        self._left_out = 0

    def failed(self, reason: object) -> None:
        """One more failed try; logged if it is the first, or a minute has passed."""
        now = self._clock()
        if self._since is not None and now - self._logged_at < self._every_s:
            self._left_out += 1
            return
        more = ""
        if self._left_out:
            more = f" ({self._left_out} more failed tries since the last line)"
        self._log.log(self._level, "%s: %s%s", self._what, reason, more)
        self._since = self._since if self._since is not None else now
        self._logged_at, self._left_out = now, 0

    def succeeded(self) -> None:
        """The operation worked: a line if it had been failing."""
        if self._since is None:
            return
        self._log.info("%s: working again after %.0f s", self._what, self._clock() - self._since)
        self._since, self._left_out = None, 0
