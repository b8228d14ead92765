"""bot/app.py: what the running process does once everything has started."""

from __future__ import annotations

import gc

from bot.app import _freeze_startup_objects


def test_objects_alive_at_start_are_left_out_of_full_collections() -> None:
    gc.unfreeze()
    startup_state = [{"table": list(range(100))} for _ in range(1000)]
    try:
        _freeze_startup_objects()
        assert gc.get_freeze_count() >= len(startup_state)
    finally:
        gc.unfreeze()
