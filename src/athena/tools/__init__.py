"""Tools the LLM may call: Home Assistant's own (its MCP server) and any other MCP server the operator adds.

The engine sees one `Toolbox`: the tools offered now (names valid and stable for every backend) and a `call`
that never raises — a server down, a timeout or invalid arguments come back as an error outcome the model
reads. `MCPToolbox` is the one built from the settings (gateway.py): `HomeAssistantTools` for HA's
`mcp_server` integration, a `ToolServer` per entry of ATHENA_MCP_SERVERS, each with its `ToolPolicy`.
"""

from athena.tools.base import Tool, Toolbox, ToolOutcome
from athena.tools.policy import HOME_ASSISTANT as HA_POLICY
from athena.tools.policy import ToolPolicy
from athena.tools.server import HOME_ASSISTANT, HomeAssistantTools, ToolServer
from athena.tools.toolbox import MCPToolbox

__all__ = [
    "HA_POLICY",
    "HOME_ASSISTANT",
    "HomeAssistantTools",
    "MCPToolbox",
    "Tool",
    "ToolOutcome",
    "ToolPolicy",
    "ToolServer",
    "Toolbox",
]
