"""A deliberately slow write path: what a frozen file system does to SQLite.

``fsfreeze`` (or a disk that stops answering) makes a commit's ``write()`` and
``fsync()`` wait until the file system thaws. :class:`DiskStall` reproduces that on
real SQLite connections without root: installed as a connection's trace callback
(``SqliteStore(on_connect=stall.install)``), every ``COMMIT`` started while it is
frozen waits, on the thread and in the process that runs it, until :meth:`thaw`.
Reads go on, as they do from the page cache. Used by tests/test_store_bounds.py and
bench/bench_bounds.py.

The store's writer runs in a child process, so the state lives in files of a
directory of its own (a frozen mark, one file per stuck commit, a log of held
commits): both objects pickle, and the test's process sees what the child does.
:class:`WriterGate` is a job that holds the writer until released, the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

GUARD_S = 30.0  # a frozen commit gives up waiting after this long (a test gone wrong)
POLL_S = 0.002  # how often a held commit looks whether the disk thawed
FROZEN = "frozen"
STUCK_PREFIX = "stuck-"
HELD_LOG = "held.log"


class DiskStall:
    """Holds every COMMIT on the connections it is installed on while frozen."""

    def __init__(self, guard_s: float = GUARD_S) -> None:
        self._guard_s = guard_s
        self._dir = Path(tempfile.mkdtemp(prefix="disk-stall-"))

    def install(self, con: sqlite3.Connection) -> None:
        """Watch ``con``'s statements (sqlite3 calls the callback on the running thread)."""
        con.set_trace_callback(self._trace)

    def freeze(self) -> None:
        (self._dir / FROZEN).touch()

    def thaw(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._dir / FROZEN).unlink()

    def freeze_for(self, seconds: float) -> threading.Timer:
        """Freeze now and thaw from another thread after ``seconds``, as an operator's
        ``fsfreeze -u`` would: the thaw does not depend on the event loop running."""
        self.freeze()
        timer = threading.Timer(seconds, self.thaw)
        timer.daemon = True
        timer.start()
        return timer

    @property
    def stuck(self) -> int:
        """Commits waiting right now."""
        return sum(1 for p in self._dir.iterdir() if p.name.startswith(STUCK_PREFIX))

    @property
    def held(self) -> int:
        """Commits that had to wait, in all."""
        return len(self._held_lines())

    @property
    def held_on(self) -> set[str]:
        """Where they waited: ``"<pid>/<thread name>"`` each."""
        return set(self._held_lines())

    def remove(self) -> None:
        """Delete the state directory (thawing anything still held)."""
        shutil.rmtree(self._dir, ignore_errors=True)

    def _held_lines(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return (self._dir / HELD_LOG).read_text().splitlines()
        return []

    def _trace(self, sql: str) -> None:
        if sql.lstrip()[:6].upper() != "COMMIT" or not (self._dir / FROZEN).exists():
            return
        where = f"{os.getpid()}/{threading.current_thread().name}"
        with open(self._dir / HELD_LOG, "a") as log:
            log.write(where + "\n")
        mark = self._dir / f"{STUCK_PREFIX}{os.getpid()}-{threading.get_ident()}"
        mark.touch()
        try:
            deadline = time.monotonic() + self._guard_s
            while (self._dir / FROZEN).exists() and time.monotonic() < deadline:
                time.sleep(POLL_S)
        finally:
            mark.unlink()


class WriterGate:
    """A job (``store._in_worker(gate)``) that holds the writer until :meth:`open`."""

    def __init__(self, guard_s: float = GUARD_S) -> None:
        self._guard_s = guard_s
        self._dir = Path(tempfile.mkdtemp(prefix="writer-gate-"))

    @property
    def holding(self) -> bool:
        """The job started and is holding the writer."""
        return (self._dir / "holding").exists()

    def open(self) -> None:
        (self._dir / "open").touch()

    def remove(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def __call__(self, _con: sqlite3.Connection) -> None:
        (self._dir / "holding").touch()
        deadline = time.monotonic() + self._guard_s
        while not (self._dir / "open").exists() and time.monotonic() < deadline:
            time.sleep(POLL_S)


class StatementLog:
    """Records every statement of the connections it is installed on, in any process
    (``SqliteStore(on_connect=log.install)``)."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="statements-"))
        self._file = self._dir / "statements.log"

    def install(self, con: sqlite3.Connection) -> None:
        con.set_trace_callback(self._record)

    def statements(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return self._file.read_text().split("\0")[:-1]
        return []

    def clear(self) -> None:
        self._file.write_text("")

    def remove(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def _record(self, sql: str) -> None:
        with open(self._file, "a") as out:
            out.write(sql + "\0")
