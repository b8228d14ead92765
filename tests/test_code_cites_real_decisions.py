"""Every decision a code comment cites in PERFORMANCE.md is still written there.

Code that is less plain than it could be says why by naming a heading or a row of
PERFORMANCE.md's optimisations table (``(PERFORMANCE.md, "Recent turns stay in
memory")``), not by quoting figures that go stale. A renamed row or heading would
leave that comment pointing at nothing; this catches it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("bot", "storage", "adapters", "bench", "fakes")
# A comment or docstring may break the quoted name over lines ("# " continuing it).
LINE_BREAK = re.compile(r"\s*\n\s*(?:#\s*)?")
CITATION = re.compile(r'PERFORMANCE\.md,\s+"([^"]+)"')
ROW_NAME = re.compile(r"^\| (.+?) \|", re.M)
HEADING = re.compile(r"^#+ (.+)$", re.M)


def cited_decisions(source: str) -> list[str]:
    """The names cited as ``(PERFORMANCE.md, "name")``, line breaks folded."""
    return CITATION.findall(LINE_BREAK.sub(" ", source))


def decisions() -> set[str]:
    """The headings of PERFORMANCE.md and the first cell of each table row."""
    text = (ROOT / "PERFORMANCE.md").read_text(encoding="utf-8")
    return set(HEADING.findall(text)) | set(ROW_NAME.findall(text))


def sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py"))


def test_a_citation_broken_over_comment_lines_is_read_whole() -> None:
    source = '# cheaper (PERFORMANCE.md, "The collector skips start-up\n    # state")\n'
    assert cited_decisions(source) == ["The collector skips start-up state"]


def test_the_code_cites_decisions() -> None:
    assert any(cited_decisions(p.read_text(encoding="utf-8")) for p in sources())


def test_every_cited_decision_is_in_performance_md() -> None:
    known = decisions()
    missing: dict[str, list[str]] = {}
    for path in sources():
        unknown = set(cited_decisions(path.read_text(encoding="utf-8"))) - known
        if unknown:
            missing[str(path.relative_to(ROOT))] = sorted(unknown)
    assert not missing, f"cited, but no longer in PERFORMANCE.md: {missing}"
