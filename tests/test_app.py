"""bot/app.py: what the running process does once everything has started."""

from __future__ import annotations

import gc

from bot.app import GC_YOUNG_THRESHOLD, _tune_collector


def test_objects_alive_at_start_are_left_out_of_full_collections() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    startup_state = [{"table": list(range(100))} for _ in range(1000)]
    try:
        _tune_collector()
        assert gc.get_freeze_count() >= len(startup_state)
        # One answer's short-lived objects no longer set off young collections.
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert GC_YOUNG_THRESHOLD > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
