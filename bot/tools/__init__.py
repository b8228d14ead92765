"""Tools for the model: MCP servers (the official ``mcp`` SDK), where tools are on,
and the approval of actions. The tool loop itself is ``bot/tool_loop.py``."""
