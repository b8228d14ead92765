"""An example MCP server for the bot's tools: a calculator and a notebook.

Written with the ``mcp`` SDK's MCPServer (formerly FastMCP). Run it over stdio
(what ``tools.servers[].command`` starts)::

    python -m examples.mcp_notes_server

or over streamable HTTP on 127.0.0.1 (``tools.servers[].url: http://127.0.0.1:8765/mcp``)::

    python -m examples.mcp_notes_server --http --port 8765

``save_note`` writes, so the example config marks it ``confirm``. ``fail`` always
raises, to show how a tool's error reaches the model. Notes live in memory and are
bounded (MAX_NOTES of at most MAX_NOTE_CHARS each).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import operator
from collections.abc import Callable

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

MAX_NOTES = 100
MAX_NOTE_CHARS = 2000
MAX_EXPRESSION_CHARS = 200
MAX_POWER = 100  # 2 ** 10**9 would keep the server busy for minutes
DEFAULT_PORT = 8765
MAX_WAIT_S = 60.0

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}

server: MCPServer = MCPServer("notes")
_notes: dict[str, str] = {}


@server.tool()
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression such as (2 + 3) * 4. Supports + - * / % **."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError("expression too long")
    try:
        value = _evaluate(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ArithmeticError) as exc:
        raise ToolError(f"cannot calculate {expression!r}: {exc}") from None
    return f"{value:g}"


@server.tool()
def save_note(title: str, text: str) -> str:
    """Save a note under a title (replaces a note with the same title)."""
    if len(_notes) >= MAX_NOTES and title not in _notes:
        raise ToolError("the notebook is full")
    _notes[title] = text[:MAX_NOTE_CHARS]
    return f"saved note {title!r}"


@server.tool()
def read_note(title: str) -> str:
    """Read the note with this title."""
    if title not in _notes:
        raise ToolError(f"no note titled {title!r}")
    return _notes[title]


@server.tool()
def list_notes() -> str:
    """List the titles of all saved notes."""
    return "\n".join(sorted(_notes)) or "(no notes)"


@server.tool()
async def wait(seconds: float) -> str:
    """Wait this many seconds (at most 60), then say so (shows how a slow tool looks)."""
    await asyncio.sleep(min(max(seconds, 0.0), MAX_WAIT_S))
    return f"waited {seconds:g}s"


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason (shows how tool errors look)."""
    raise ToolError(reason)


def _evaluate(node: ast.expr) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_POWER:
            raise ToolError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    raise ToolError("only numbers and + - * / % ** are allowed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP, not stdio")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.port)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
