"""Who may import whom: the core knows no platform, adapters know the core only
through ``bot.adapter``, and ``bot/app.py`` alone wires storage and adapters in.

Read from the source (every import, also inside functions and TYPE_CHECKING
blocks), and from what a real ``python -m bot console`` process imports.
"""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

from fakes.fake_openai import FakeOpenAI, reply
from tests.support import ROOT, RUN_LIMIT_S, bot_env

PLATFORM_LIBRARIES = ("discord", "slack_bolt", "slack_sdk")
COMPOSITION_ROOT = "bot.app"  # the one bot/ module that imports storage and adapters
OUTER_PACKAGES = ("adapters", "storage")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def modules_in(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_module_name_resolution_reads_relative_imports() -> None:
    found = imports_of(ROOT / "adapters" / "discord" / "__init__.py")
    assert "adapters.discord.adapter" in found and "bot.adapter.CoreAPI" in found
    assert "bot.texts" in imports_of(ROOT / "bot" / "app.py")


def test_no_bot_module_imports_a_platform_library() -> None:
    offenders = {
        _module_name(path): sorted(m for m in imports_of(path) if _within(m, PLATFORM_LIBRARIES))
        for path in modules_in("bot")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_only_the_composition_root_imports_storage_and_adapters() -> None:
    importers = {
        _module_name(path)
        for path in modules_in("bot")
        if any(_within(m, OUTER_PACKAGES) for m in imports_of(path))
    }
    assert importers == {COMPOSITION_ROOT}
    # Of adapters/, only the registry: it imports a platform's package when that
    # platform starts, so importing bot.app loads no platform library.
    adapters = {m for m in imports_of(ROOT / "bot" / "app.py") if _within(m, ("adapters",))}
    assert adapters and all(_within(m, ("adapters.registry",)) for m in adapters)


def test_adapters_see_the_core_only_through_its_protocol() -> None:
    offenders = {
        _module_name(path)
        for path in modules_in("adapters")
        if any(_within(m, ("bot.core", "bot.app")) for m in imports_of(path))
    }
    assert offenders == set()


def test_importing_the_composition_root_loads_no_platform_library() -> None:
    probe = (
        "import sys, bot.app\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {PLATFORM_LIBRARIES!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def _imported(importtime_log: str) -> set[str]:
    """Module names from ``-X importtime`` lines ("import time: self | total | name")."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_log.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


async def test_the_console_process_loads_no_platform_library(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """``python -m bot console`` builds its adapter through the registry and answers,
    without importing discord.py or slack_bolt on the way."""
    fake_openai.script(reply("hi there"))
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-X", "importtime", "-m", "bot", "console"),
        cwd=ROOT,
        env=bot_env(tmp_path, fake_openai),
        stdin=PIPE,
        stdout=PIPE,
        stderr=PIPE,
    )
    raw_out, raw_err = await asyncio.wait_for(proc.communicate(b"hello\n"), RUN_LIMIT_S)
    out, err = raw_out.decode(), raw_err.decode()
    assert proc.returncode == 0, err
    assert out.strip() == "answer: hi there"
    imported = _imported(err)
    assert {"adapters.registry", "adapters.console", "storage"} <= imported
    assert sorted(m for m in imported if _within(m, PLATFORM_LIBRARIES)) == []
