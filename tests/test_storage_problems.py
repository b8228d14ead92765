"""The line shown when the SQLite file cannot be opened because its disk is full.

SQLite often reports a full disk at start as a plain "disk I/O error" (creating its
WAL index fails), so ``describe`` asks the file system how much space is left. The
file system is the one thing faked here: filling a real disk needs a mount.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from storage import problems

BLOCK = 4096


def _disk(free_blocks: int, total_blocks: int = 1000) -> os.statvfs_result:
    # (bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax)
    return os.statvfs_result(
        (BLOCK, BLOCK, total_blocks, free_blocks, free_blocks, 100, 50, 50, 0, 255)
    )


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> list[os.statvfs_result]:
    """The file system every path is on; set ``disk[0]``."""
    current = [_disk(free_blocks=10_000, total_blocks=100_000)]
    monkeypatch.setattr(os, "statvfs", lambda _path: current[0])
    return current


def test_an_io_error_on_a_full_disk_says_the_disk_is_full(
    tmp_path: Path, disk: list[os.statvfs_result]
) -> None:
    disk[0] = _disk(free_blocks=1)
    error = problems.describe(str(tmp_path / "bot.db"), sqlite3.OperationalError("disk I/O error"))
    assert error.path == problems.CONFIG_KEY
    assert error.problem == f"cannot use {tmp_path / 'bot.db'}: its disk is full (disk I/O error)"


def test_an_io_error_with_space_left_is_shown_as_it_is(
    tmp_path: Path, disk: list[os.statvfs_result]
) -> None:
    error = problems.describe(str(tmp_path / "bot.db"), sqlite3.OperationalError("disk I/O error"))
    assert error.problem == f"cannot use {tmp_path / 'bot.db'}: disk I/O error"


def test_sqlites_own_full_error_is_named_whatever_the_file_system_says(
    tmp_path: Path, disk: list[os.statvfs_result]
) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    assert "its disk is full" in str(problems.describe(str(tmp_path / "bot.db"), full))


def test_a_file_system_without_a_size_is_not_called_full(
    tmp_path: Path, disk: list[os.statvfs_result]
) -> None:
    disk[0] = _disk(free_blocks=0, total_blocks=0)  # what /proc reports
    refused = sqlite3.OperationalError("unable to open database file")
    text = str(problems.describe(str(tmp_path / "bot.db"), refused))
    assert "full" not in text and "unable to open database file" in text
