"""Test modules share helpers through tests/support.py, never by importing each other.

One test module importing another runs (and collects) the other's module code
twice under two names and ties unrelated files together; a helper that two
modules need belongs in tests/support.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TEST_MODULE_PREFIX = "test_"


def _is_test_module(dotted: str) -> bool:
    """Does an import of ``dotted`` (absolute, e.g. tests.test_core) name a test module?"""
    return any(part.startswith(TEST_MODULE_PREFIX) for part in dotted.split("."))


def imported_test_modules(source: str) -> list[str]:
    """The test modules ``source`` imports, anywhere in it, as dotted names."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            prefix = "." * node.level + module
            if _is_test_module(module):
                found.append(prefix)
            else:  # "from tests import test_x", "from . import test_x"
                joiner = "." if module else ""
                found += [prefix + joiner + a.name for a in node.names if _is_test_module(a.name)]
    return found


def test_no_test_module_imports_another() -> None:
    modules = sorted(TESTS.rglob("*.py"))
    assert any(p.name == "support.py" for p in modules)  # the walk sees the tests folder
    offenders = {
        str(path.relative_to(TESTS)): imports
        for path in modules
        if (imports := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_check_sees_every_way_of_importing_a_test_module() -> None:
    source = "\n".join(
        (
            "from tests.test_core import helper",
            "from .test_slack_e2e import running",
            "from . import test_split",
            "from tests import support, test_floods",
            "import tests.test_pacing",
            "def later():",
            "    from tests.test_cli import bot_env",
        )
    )
    assert imported_test_modules(source) == [
        "tests.test_core",
        ".test_slack_e2e",
        ".test_split",
        "tests.test_floods",
        "tests.test_pacing",
        "tests.test_cli",
    ]


def test_the_check_lets_shared_helpers_through() -> None:
    source = "\n".join(
        (
            "from tests.support import settle",
            "from fakes.fake_openai import reply",
            "from tests import support",
            "import pytest",
            "from bot.texts import Texts",
        )
    )
    assert imported_test_modules(source) == []
