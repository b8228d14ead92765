"""The terminal chat: "question: ... answer: ...", streamed as the model writes.

Reads lines from stdin (a terminal or a pipe) until EOF; each line is one
message in a single console conversation whose history persists across runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import getpass
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, TextIO

from bot.errors import StorageError
from bot.tool_use import approval_reply
from bot.types import ConversationKey, IncomingMessage, PlatformLimits

if TYPE_CHECKING:
    from bot.adapter import CoreAPI
    from bot.config import ConsoleConfig

log = logging.getLogger(__name__)

# Lines read from stdin and not yet handed in, at most (each of the two buffers).
READ_AHEAD_LINES = 256

# Control characters a terminal acts on (ESC starts sequences that clear the screen,
# set the window title or remap keys; CR overwrites a line): a model's text is shown,
# never obeyed. Tab and newline stay.
TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# The reply target of every console message: there is one terminal to answer in.
CONSOLE_TARGET = "console"

# A terminal has no length limit and no rate limit; it streams by appending.
CONSOLE_LIMITS = PlatformLimits(
    max_len=1_000_000,
    can_edit=False,
    native_stream=True,
    edit_burst=1_000_000,
    edit_rate=1_000_000.0,
    min_edit_interval=0.0,
)


class _Output:
    """Where answers print; ``closed`` once its reader is gone (``... console | head``)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.closed = False

    def write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self._out.write(TERMINAL_CONTROLS.sub("", text))
            self._out.flush()
        except BrokenPipeError:
            # Nothing more can be shown; the adapter stops reading. What is still
            # buffered would fail again as Python exits: send it nowhere.
            self.closed = True
            with contextlib.suppress(OSError, ValueError):  # not a file: nothing to do
                _discard_output(self._out.fileno())


class ConsoleSink:
    """Prints the answer to a text stream; appends instead of editing."""

    limits = CONSOLE_LIMITS
    pace_key = "console"

    def __init__(self, out: TextIO | _Output, answer_label: str) -> None:
        self._output = out if isinstance(out, _Output) else _Output(out)
        self._label = answer_label
        self._count = 0

    @property
    def closed(self) -> bool:
        """The reader of our output is gone."""
        return self._output.closed

    def labelled(self, answer_label: str) -> ConsoleSink:
        """A sink to the same output whose answers start with ``answer_label``."""
        return ConsoleSink(self._output, answer_label)

    def _write(self, text: str) -> None:
        self._output.write(text)

    def _next_id(self) -> str:
        self._count += 1
        return str(self._count)

    async def typing(self) -> None:
        """Nothing to show: the answer starts streaming within moments."""

    async def send(self, text: str) -> str:
        self._write(f"{self._label}{text}\n")
        return self._next_id()

    async def edit(self, message_id: str, text: str) -> None:
        # Unreachable with can_edit=False; print rather than lose the text.
        self._write(f"{self._label}{text}\n")

    async def stream_start(self, text: str) -> str:
        self._write(f"{self._label}{text}")
        return self._next_id()

    async def stream_append(self, stream_id: str, text: str) -> None:
        self._write(text)

    async def stream_stop(self, stream_id: str, text: str = "") -> None:
        self._write(text + "\n")


class ConsoleAdapter:
    """Feeds stdin lines to the core, one answer at a time."""

    name = "console"

    def __init__(
        self,
        cfg: ConsoleConfig,
        core: CoreAPI,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO | None = None,
    ) -> None:
        self._core = core
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr if stderr is not None else sys.stderr
        self._key = ConversationKey("console", "local", cfg.session)
        self._user = cfg.user_name or _login_name()
        self._interactive = stdin.isatty()
        self._sink = ConsoleSink(stdout, core.texts.get("console_answer"))
        # A question cut off by the last run's end is answered at start: say so, as
        # the terminal no longer shows that question.
        self._recovery_sink = self._sink.labelled(core.texts.get("console_answer_recovered"))
        self._task: asyncio.Task[None] | None = None
        self._count = 0

    async def start(self) -> None:
        if self._interactive:
            self._stdout.write(self._core.texts.get("console_welcome") + "\n")
        self._task = asyncio.create_task(self._loop(), name="console")

    async def wait_closed(self) -> None:
        """Return at the end of input; raises StorageError if the store failed."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop_intake(self) -> None:
        """Read no more lines; an answer being written keeps the grace period."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def sink_for(self, target: str) -> ConsoleSink | None:
        """The terminal, for a question an earlier run was cut off answering."""
        return self._recovery_sink if target == CONSOLE_TARGET else None

    async def close(self) -> None:
        """Nothing to close: stdin and stdout belong to the process."""

    async def _loop(self) -> None:
        lines = _read_lines_in_thread(self._stdin)
        held: deque[str | None] = deque()  # a pipe's lines read while an answer ran
        try:
            while True:
                if self._interactive:
                    self._stdout.write(self._core.texts.get("console_question"))
                    self._stdout.flush()
                line = held.popleft() if held else await lines.get()
                if line is None:
                    return
                await self._hand_in(line)
                await self._drain_reading(lines, held)
                if self._sink.closed:
                    return  # output goes nowhere: stop as `check | head` does, quietly
        except asyncio.CancelledError:  # stop_intake: say what was read and not asked
            self._tell_not_asked([*held, *_taken_now(lines)])
            raise

    def _tell_not_asked(self, lines: list[str | None]) -> None:
        count = sum(1 for line in lines if line is not None and line.strip())
        if count:
            self._stderr.write(self._core.texts.get("console_not_asked", count=count) + "\n")
            self._stderr.flush()

    async def _hand_in(self, line: str) -> None:
        if not line.strip():
            return  # an empty line in a terminal is not a question
        try:
            await self._core.handle(self._message(line), self._sink)
        except StorageError as exc:
            # One line, then stop: later lines would fail the same way, and the
            # exit status tells a script that this line was not answered.
            failed = self._core.texts.get("console_storage_failed", detail=exc.detail)
            self._stderr.write(failed + "\n")
            self._stderr.flush()
            raise

    async def _drain_reading(
        self, lines: asyncio.Queue[str | None], held: deque[str | None]
    ) -> None:
        """Wait for every answer, taking in the lines that arrive meanwhile.

        A person at a terminal types while an answer runs, and each line goes in at
        once (as on any chat platform). A pipe hands over all its lines at once, so
        its questions are asked one after another instead (it would otherwise hit
        the per-person waiting cap at its fourth line); only ``!yes`` / ``!no``, the
        reply to a tool waiting for approval (bot/tool_use.py), goes in at once.
        Lines held back, and the input's end, go to ``held`` in order.
        """
        drained = asyncio.ensure_future(self._core.drain())
        try:
            while not drained.done() and _more_to_read(held):
                getter = asyncio.ensure_future(lines.get())
                await asyncio.wait({drained, getter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()  # a cancelled get takes nothing from the queue
                    break
                line = getter.result()
                if line is not None and (self._interactive or self._is_approval(line)):
                    await self._hand_in(line)
                else:
                    held.append(line)
            await drained
        finally:
            drained.cancel()

    def _is_approval(self, line: str) -> bool:
        return approval_reply(line, self._core.settings.command_prefix) is not None

    def _message(self, line: str) -> IncomingMessage:
        self._count += 1
        return IncomingMessage(
            key=self._key,
            message_id=f"{os.getpid()}-{time.time_ns()}-{self._count}",
            author_id=self._user,
            author_name=self._user,
            text=line.rstrip("\n"),
            sent_at=time.time(),
            addressed=True,
            is_dm=True,
            author_is_admin=True,  # it is the operator's own terminal
            reply_target=CONSOLE_TARGET,
        )


def _discard_output(fd: int) -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _taken_now(lines: asyncio.Queue[str | None]) -> list[str | None]:
    """What the reader thread has queued so far."""
    taken: list[str | None] = []
    while not lines.empty():
        taken.append(lines.get_nowait())
    return taken


def _more_to_read(held: deque[str | None]) -> bool:
    """Whether to read on while an answer runs: not past the input's end, and not
    more than READ_AHEAD_LINES ahead (a long pipe waits in the pipe, not in memory)."""
    return not held or (held[-1] is not None and len(held) < READ_AHEAD_LINES)


def _read_lines_in_thread(stream: TextIO) -> asyncio.Queue[str | None]:
    """Read ``stream`` on a daemon thread (works for terminals, pipes and files).

    The thread waits while READ_AHEAD_LINES lines are waiting to be taken.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue(READ_AHEAD_LINES)

    def put(item: str | None) -> None:
        try:
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        except (RuntimeError, concurrent.futures.CancelledError):  # the loop closed
            pass

    def reader() -> None:
        try:
            for line in stream:
                put(line)
        except (OSError, ValueError) as exc:
            log.warning("stopped reading stdin: %s", exc)
        finally:
            put(None)

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    return queue


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "you"


def create(cfg: ConsoleConfig, core: CoreAPI) -> ConsoleAdapter:
    """The console is always available."""
    return ConsoleAdapter(cfg, core, sys.stdin, sys.stdout)
