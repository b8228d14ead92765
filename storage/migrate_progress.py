"""The progress line ``migrate-store`` writes on stderr.

On a terminal one line redrawn in place (``\\r``), at most every ``REDRAW_S``;
in a log file or pipe a new line at each tenth of the way, so the log stays short.
"""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 30
REDRAW_S = 0.1
STEPS = 10  # lines written when stderr is not a terminal


class Progress:
    """Rows done out of ``total``, drawn on ``stream``."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._total = max(total, 0)
        self._done = 0
        self._tty = stream.isatty()
        self._drawn_at = 0.0
        self._steps_shown = 0
        self._width = 0  # of the line drawn last: a shorter one must cover it

    def advance(self, rows: int, table: str) -> None:
        """``rows`` more rows of ``table`` dealt with (copied or found there)."""
        self._done += rows
        if self._tty:
            now = time.monotonic()
            if now - self._drawn_at >= REDRAW_S or self._done >= self._total:
                self._drawn_at = now
                line = self.line(table)
                self._width = max(self._width, len(line))
                self._stream.write("\r" + line.ljust(self._width))
                self._stream.flush()
            return
        step = self._done * STEPS // self._total if self._total else STEPS
        if step > self._steps_shown:
            self._steps_shown = step
            self._stream.write(self.line(table) + "\n")
            self._stream.flush()

    def finish(self) -> None:
        """End the redrawn line, so what follows starts on its own."""
        if self._tty and self._done:
            self._stream.write("\n")
            self._stream.flush()

    def line(self, table: str) -> str:
        """``[#####-----]  50%  50,000/100,000 rows (turns)``."""
        share = self._done / self._total if self._total else 1.0
        filled = round(share * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        return f"[{bar}] {share:4.0%} {self._done:,}/{self._total:,} rows ({table})"
