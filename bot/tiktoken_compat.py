"""The one place that touches tiktoken's internals.

A ``tiktoken.Encoding`` keeps the Python dict of its ranks (``_mergeable_ranks``)
beside the Rust core's own copy, only to be pickled; we never pickle it, and for
o200k the dict is about a fifth of the bot's memory (PERFORMANCE.md, "The
tokenizer's Python ranks are dropped"). tiktoken has no public way to let it go.

Written against tiktoken :data:`WRITTEN_AGAINST` (the pin in requirements.txt).
``tests/test_compat.py`` checks that the attribute is still there and that dropping
it changes no count, naming the installed version when it does not hold.
"""

from __future__ import annotations

from typing import Any

DISTRIBUTION = "tiktoken"
WRITTEN_AGAINST = "0.14.0"
RANKS_ATTRIBUTE = "_mergeable_ranks"


def drop_python_ranks(encoding: Any) -> bool:
    """Free the encoding's Python copy of its ranks; False when it has none.

    Never raises: a tiktoken without the attribute only costs the memory.
    """
    if not isinstance(getattr(encoding, RANKS_ATTRIBUTE, None), dict):
        return False
    setattr(encoding, RANKS_ATTRIBUTE, {})
    return True
