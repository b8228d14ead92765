"""Every test the documents name as the proof of a claim exists.

README's "What survives what" and PERFORMANCE.md's optimisations each name the
test that proves them (``test_x.py::test_y``, or ``::test_z`` for another test of
the file named just before). A renamed or deleted test would leave a claim with no
proof; this catches it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "PERFORMANCE.md")
# ``tests/test_x.py``, ``test_x.py::test_y`` or ``::test_y`` (the file named last).
CITATION = re.compile(r"(?:tests/)?(test_\w+\.py)(?:::(\w+))?|::(test_\w+)")


def citations(text: str) -> list[tuple[str, str | None]]:
    """(file, test or None) for each citation, ``::name`` resolved to the last file."""
    found: list[tuple[str, str | None]] = []
    last: str | None = None
    for match in CITATION.finditer(text):
        file, name, bare = match.groups()
        if file is not None:
            last = file
            found.append((file, name))
        elif last is not None:
            found.append((last, bare))
    return found


def test_citations_resolve_a_bare_name_to_the_file_before_it() -> None:
    text = "`tests/test_a.py::test_one`, `::test_two`; `test_b.py` and `test_b.py::test_c`"
    assert citations(text) == [
        ("test_a.py", "test_one"),
        ("test_a.py", "test_two"),
        ("test_b.py", None),
        ("test_b.py", "test_c"),
    ]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_cited_test_exists(document: str) -> None:
    cited = citations((ROOT / document).read_text(encoding="utf-8"))
    assert cited, f"{document} names no test"
    missing = []
    for file, name in cited:
        path = ROOT / "tests" / file
        if not path.is_file():
            missing.append(file)
        elif name is not None and not re.search(
            rf"^(async )?def {name}\(", path.read_text(encoding="utf-8"), re.M
        ):
            missing.append(f"{file}::{name}")
    assert not missing, f"{document} cites tests that do not exist: {missing}"
