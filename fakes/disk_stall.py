"""A deliberately slow write path: what a frozen file system does to SQLite.

``fsfreeze`` (or a disk that stops answering) makes a commit's ``write()`` and
``fsync()`` wait until the file system thaws. :class:`DiskStall` reproduces that on
real SQLite connections without root: installed as a connection's trace callback
(``SqliteStore(on_connect=stall.install)``), every ``COMMIT`` started while it is
frozen waits, on the thread that runs it, until :meth:`thaw`. Reads go on, as they
do from the page cache. Used by tests/test_bounds_store.py and bench/bench_bounds.py.
"""

from __future__ import annotations

import sqlite3
import threading

GUARD_S = 30.0  # a frozen commit gives up waiting after this long (a test gone wrong)


class DiskStall:
    """Holds every COMMIT on the connections it is installed on while frozen."""

    def __init__(self, guard_s: float = GUARD_S) -> None:
        self._guard_s = guard_s
        self._thawed = threading.Event()
        self._thawed.set()
        self._lock = threading.Lock()
        self.stuck = 0  # commits waiting right now
        self.held = 0  # commits that had to wait, in all
        self.held_on: set[str] = set()  # names of the threads they waited on

    def install(self, con: sqlite3.Connection) -> None:
        """Watch ``con``'s statements (sqlite3 calls the callback on the running thread)."""
        con.set_trace_callback(self._trace)

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    def freeze_for(self, seconds: float) -> threading.Timer:
        """Freeze now and thaw from another thread after ``seconds``, as an operator's
        ``fsfreeze -u`` would: the thaw does not depend on the event loop running."""
        self.freeze()
        timer = threading.Timer(seconds, self.thaw)
        timer.daemon = True
        timer.start()
        return timer

    def _trace(self, sql: str) -> None:
        if self._thawed.is_set() or not sql.lstrip()[:6].upper() == "COMMIT":
            return
        with self._lock:
            self.stuck += 1
            self.held += 1
            self.held_on.add(threading.current_thread().name)
        try:
            self._thawed.wait(self._guard_s)
        finally:
            with self._lock:
                self.stuck -= 1
