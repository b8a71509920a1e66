"""Every private name of the MCP SDK this project touches, in one place.

`tests/test_sdk_internals.py` fails loudly when an SDK upgrade moves one of them;
the SDK version is pinned in requirements.txt for the same reason.
"""

from __future__ import annotations

from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer


def lowlevel_server(mcp: MCPServer) -> Server:
    """The low-level server, whose public `add_request_handler` serves methods MCPServer leaves out.

    The SDK's migration guide names this attribute as the way until a public one exists.
    """
    return mcp._lowlevel_server


def live_session_ids(mcp: MCPServer) -> set[str]:
    """Ids of the sessions this process holds now (stateful presets only)."""
    return set(mcp.session_manager._server_instances)
