"""A writer killed with SIGKILL mid-burst loses nothing it reported as stored."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KILL_AFTER_LINES = 400  # stored turns reported before the kill
DEADLINE_S = 20.0  # only reached if the writer hangs; normally well under a second
ROUNDS = 3  # each round reopens the file the previous kill left behind

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def test_sigkill_mid_burst_keeps_every_reported_turn(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    reported: set[tuple[str, str]] = set()
    for round_ in range(ROUNDS):
        reported |= _run_and_kill(path, f"r{round_}")
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            turns = set(
                db.execute("SELECT conversation, message_id FROM turns WHERE role = 'user'")
            )
            seen = set(db.execute("SELECT conversation, message_id FROM seen"))
        db.close()
        assert reported <= turns, f"lost after round {round_}: {sorted(reported - turns)[:5]}"
        assert seen == turns  # dedupe row and turn are committed together or not at all


def _run_and_kill(path: Path, prefix: str) -> set[tuple[str, str]]:
    """Start the writer, SIGKILL it once enough turns were reported, return them."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_writer", str(path), prefix],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        output = _read_lines_until(proc, KILL_AFTER_LINES + 1)  # +1 for "ready"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DEADLINE_S)
        output += proc.stdout.read()  # lines flushed just before the kill count too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    complete = output.decode().split("\n")[:-1]  # a cut-off last line is not a report
    assert complete[0] == "ready"
    pairs = [line.split(" ") for line in complete[1:]]
    return {(conv, mid) for conv, mid in pairs}


def _read_lines_until(proc: subprocess.Popen[bytes], lines: int) -> bytes:
    assert proc.stdout is not None and proc.stderr is not None
    fd = proc.stdout.fileno()
    buffer = b""
    deadline = time.monotonic() + DEADLINE_S
    while buffer.count(b"\n") < lines:
        left = deadline - time.monotonic()
        assert left > 0, "writer produced too little output before the deadline"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"writer exited early: {proc.stderr.read().decode()}"
            buffer += chunk
    return buffer
