"""The SQLite writer in a process of its own: the default for a database file.

Why a process and not a thread: the writer must not run on the event loop's thread
(a frozen file system holds ``write()``, and the loop with it), but on a thread of
the same process it shares the GIL with the loop, and the ``sqlite3`` module hands
the GIL back and forth around every statement. Under load each hand-over waits for
the busy loop and costs it a context switch; that made the writer thread the
largest cost of an answer (PERFORMANCE.md, "SQLite writes are committed in groups,
in a process of their own"). A child process has its own interpreter: the loop
only writes each job to a pipe and reads the results back when they come.

The child runs exactly the thread's group logic (:func:`storage.sqlite_writer.run_jobs`:
one transaction per wake-up, a savepoint per job). A job is a module-level function
and its arguments, pickled; its result or error comes back pickled. Each job's
future resolves only after its commit, in job order, and the writer holds at most
``max_pending`` jobs (:class:`~storage.sqlite_writer.WriteQueueFull` beyond).

The child ignores SIGINT and SIGTERM (the bot's own shutdown closes it, after the
answers in flight are stored) and exits when its stdin ends, so it never outlives
the bot, also after a SIGKILL. If it dies, the jobs it held fail with
:class:`WriterProcessExited` (a storage error: nothing is reported stored that was
not known to be committed) and the next write starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from .sqlite_writer import MAX_PENDING, WriterBase, _Job, run_jobs

FRAME = struct.Struct("<I")  # each message: its length, then a pickle
# Below malloc's mmap threshold (128 KiB): a larger read buffer is mapped and unmapped
# on every read, three system calls and page faults per wake-up on both sides.
READ_BYTES = 1 << 16
PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL
EXIT_WAIT_S = 5.0  # close: how long the child may take to exit after its last job
EXIT_POLL_S = 0.01
ROOT = Path(__file__).resolve().parents[1]  # where ``storage`` and ``bot`` are imported from
# The child needs none of the bot's credentials: such names stay out of its environment.
SECRET_NAME = re.compile(r"key|token|secret|pass|pwd|auth|credential|database_url", re.I)
CHILD_CODE = "import sys; from storage.sqlite_writer_process import child_main; "
CHILD_CODE += "sys.exit(child_main(sys.argv[1]))"

# (job id, function, arguments, solo, stop) -> (job id, value, error)
Request = tuple[int, Callable[..., Any], tuple[Any, ...], bool, bool]
Result = tuple[int, Any, Any]


class WriterProcessExited(sqlite3.OperationalError):
    """The writer process ended while this job was queued or running."""


class ProcessWriter(WriterBase):
    """Runs functions of one SQLite connection in a child process (see module doc);
    a job's function and arguments must pickle (a module-level function)."""

    def __init__(self, path: str, *, max_pending: int = MAX_PENDING) -> None:
        """Start the child for the database file ``path``."""
        self._path = path
        self._max_pending = max_pending
        self._loop = asyncio.get_running_loop()
        self._futures: dict[int, asyncio.Future[Any]] = {}  # in job order
        self._next_id = 0
        self._out = bytearray()  # requests not yet taken by the pipe
        self._in = bytearray()  # results not yet complete
        self._flush_scheduled = False
        self._awaiting_pipe = False
        self._closing = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._spawn()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return len(self._futures)

    @property
    def pid(self) -> int | None:
        """The child's process id (None between a crash and the next write)."""
        return None if self._proc is None else self._proc.pid

    async def close(self) -> None:
        """Run what is queued, close the connection, end the child; safe twice."""
        if self._closing:
            return
        self._closing = True
        if self._proc is None:
            return
        with contextlib.suppress(WriterProcessExited):
            await asyncio.shield(self._enqueue(_close, (), solo=True, stop=True))
        await self._reap()

    # -- the event loop's side --

    def _submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], solo: bool
    ) -> asyncio.Future[Any]:
        self._admit()
        if self._proc is None:  # the last one died: start again
            self._spawn()
        return self._enqueue(fn, args, solo, stop=False)

    def _enqueue(
        self, fn: Callable[..., Any], args: tuple[Any, ...], solo: bool, stop: bool
    ) -> asyncio.Future[Any]:
        job_id = self._next_id + 1
        data = pickle.dumps((job_id, fn, args, solo, stop), PICKLE_PROTOCOL)
        self._next_id = job_id
        future = self._loop.create_future()
        self._futures[job_id] = future
        self._out += FRAME.pack(len(data))
        self._out += data
        if not self._flush_scheduled and not self._awaiting_pipe:
            # Everything submitted in this turn of the loop goes in one write, so the
            # child takes it in one read and commits it as one group.
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        proc = self._proc
        if proc is None or proc.stdin is None or not self._out:
            return
        try:
            sent = os.write(proc.stdin.fileno(), self._out)
        except BlockingIOError:
            sent = 0
        except OSError:  # the child is gone; its stdout's end tells the rest
            self._out.clear()
            return
        del self._out[:sent]
        waiting = bool(self._out)  # the pipe is full: the child is busy or stalled
        if waiting != self._awaiting_pipe:
            self._awaiting_pipe = waiting
            if waiting:
                self._loop.add_writer(proc.stdin.fileno(), self._flush)
            else:
                self._loop.remove_writer(proc.stdin.fileno())

    def _readable(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        try:
            data = os.read(proc.stdout.fileno(), READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._exited()
            return
        self._in += data
        while len(self._in) >= FRAME.size:
            (size,) = FRAME.unpack_from(self._in)
            end = FRAME.size + size
            if len(self._in) < end:
                break
            results: list[Result] = pickle.loads(bytes(self._in[FRAME.size : end]))
            del self._in[:end]
            self._settle(results)

    def _settle(self, results: list[Result]) -> None:
        for job_id, value, error in results:
            future = self._futures.pop(job_id, None)
            if future is None or future.done():  # the caller was cancelled; it ran anyway
                continue
            if error is not None:
                future.set_exception(_rebuilt(error))
            else:
                future.set_result(value)

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not SECRET_NAME.search(k)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, self._path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        os.set_blocking(proc.stdin.fileno(), False)
        os.set_blocking(proc.stdout.fileno(), False)
        self._proc = proc
        self._out.clear()
        self._in.clear()
        self._awaiting_pipe = False
        self._loop.add_reader(proc.stdout.fileno(), self._readable)

    def _exited(self) -> None:
        """The child closed its end: fail what it held; the next write starts another."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._detach(proc)
        code = proc.poll()
        error = WriterProcessExited(f"the SQLite writer process exited (code {code})")
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(error)

    def _detach(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop watching the child's pipes and close our ends."""
        assert proc.stdin is not None and proc.stdout is not None
        self._loop.remove_reader(proc.stdout.fileno())
        if self._awaiting_pipe:
            self._loop.remove_writer(proc.stdin.fileno())
            self._awaiting_pipe = False
        proc.stdout.close()
        proc.stdin.close()

    async def _reap(self) -> None:
        """Wait for the child to exit after its last job, without blocking the loop."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._detach(proc)
        deadline = time.monotonic() + EXIT_WAIT_S
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()  # it did not exit after its last job: a stuck disk
                deadline = float("inf")
            await asyncio.sleep(EXIT_POLL_S)


# -- errors across the pipe --


def _portable(error: BaseException | None) -> Any:
    """An error as it can cross the pipe: sqlite3's keep their class and codes."""
    if error is None:
        return None
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        name = getattr(error, "sqlite_errorname", None)
        return ("sqlite3", type(error).__name__, str(error), code, name)
    try:
        pickle.dumps(error, PICKLE_PROTOCOL)
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _rebuilt(error: Any) -> BaseException:
    if isinstance(error, tuple):
        _, class_name, message, code, name = error
        cls = getattr(sqlite3, class_name, sqlite3.Error)
        exc = cls(message) if isinstance(cls, type) else sqlite3.Error(message)
        exc.sqlite_errorcode, exc.sqlite_errorname = code, name
        return cast(BaseException, exc)
    return cast(BaseException, error)


# -- the child --


def _close(con: sqlite3.Connection) -> None:
    """The last job: SQLite checkpoints and removes the WAL as the connection closes."""
    con.close()


def _requests(buffer: bytearray) -> list[Request]:
    """Take every complete request out of ``buffer``."""
    requests: list[Request] = []
    while len(buffer) >= FRAME.size:
        (size,) = FRAME.unpack_from(buffer)
        end = FRAME.size + size
        if len(buffer) < end:
            break
        requests.append(pickle.loads(bytes(buffer[FRAME.size : end])))
        del buffer[:end]
    return requests


def _answer(requests: list[Request], jobs: list[_Job]) -> bytes:
    results: list[Result] = [
        (job_id, job.value, _portable(job.error))
        for (job_id, *_), job in zip(requests, jobs, strict=True)
    ]
    try:
        data = pickle.dumps(results, PICKLE_PROTOCOL)
    except Exception:  # a value that does not pickle fails its own job only
        data = pickle.dumps([_picklable(result) for result in results], PICKLE_PROTOCOL)
    return FRAME.pack(len(data)) + data


def _picklable(result: Result) -> Result:
    job_id, value, _ = result
    try:
        pickle.dumps(value, PICKLE_PROTOCOL)
    except Exception as exc:
        return job_id, None, _portable(exc)
    return result


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def child_main(path: str) -> int:
    """Serve jobs from stdin until it ends or a stop job ran."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    buffer = bytearray()
    while True:
        data = os.read(stdin, READ_BYTES)
        if not data:  # the bot is gone (or closed us): nothing more will come
            break
        buffer += data
        requests = _requests(buffer)
        if not requests:
            continue
        jobs = [_Job(fn, args, None, solo, stop) for _, fn, args, solo, stop in requests]
        run_jobs(con, jobs)
        try:
            _write_all(stdout, _answer(requests, jobs))
        except BrokenPipeError:
            break
        if any(job.stop for job in jobs):
            break
    con.close()
    return 0
