"""Example programs that work with the bot (an MCP server for its tools)."""
