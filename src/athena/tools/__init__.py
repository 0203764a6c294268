"""Tools the LLM may call: Home Assistant's own (its MCP server) and any other MCP server the operator adds.

The engine sees one `Toolbox`: the tools offered now (names valid and stable for every backend) and a `call`
that never raises — a server down, a timeout or invalid arguments come back as an error outcome the model
reads.
"""

from athena.tools.base import Tool, Toolbox, ToolOutcome

__all__ = ["Tool", "ToolOutcome", "Toolbox"]
