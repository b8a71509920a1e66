"""The servers `instance_app` serves: the SDK's `MCPServer`, and FastMCP 4's `FastMCP` (served as an MCPServer
over its low-level server); and what the layer reads of a tool's context, whichever of the two made it."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import RequestId
from starlette.applications import Starlette

from mcp_cluster import sdk_internals

_SERVED: WeakKeyDictionary[Any, MCPServer] = WeakKeyDictionary()  # a FastMCP server, and the MCPServer over it


def is_server(value: object) -> bool:
    """Whether `instance_app` serves `value`."""
    return isinstance(value, MCPServer) or _is_fastmcp(value)


def served(server: Any) -> MCPServer:
    """The MCPServer the layer serves for `server` (the same one each time for a FastMCP server)."""
    if isinstance(server, MCPServer):
        return server
    if not _is_fastmcp(server):
        raise TypeError(f"instance_app serves an MCPServer or a fastmcp.FastMCP, not {type(server).__name__}")
    if server.auth is not None:
        raise ValueError(
            f"{server.name!r} was built with auth of its own; give it through the instance settings "
            "(MCP_AUTH_JWKS, MCP_AUTH_ISSUER, MCP_AUTH_RESOURCE), which every instance checks before routing"
        )
    if server not in _SERVED:
        _SERVED[server] = sdk_internals.over_fastmcp(server)
    return _SERVED[server]


@dataclass(frozen=True)
class ToolCall:
    """What the layer reads of a tool's context: the server serving it, and the request."""

    server: MCPServer | None  # None: a FastMCP server the layer does not serve
    protocol_version: str | None
    headers: Mapping[str, str]
    request_id: RequestId


def tool_call_of(ctx: Any) -> ToolCall:
    """The call a tool's context (the SDK's `Context`, or FastMCP's) stands for."""
    if isinstance(ctx, Context):
        return ToolCall(ctx.mcp_server, ctx.protocol_version, ctx.headers or {}, ctx.request_id)
    request = ctx.request_context  # FastMCP's: None outside a request
    if request is None:
        raise RuntimeError("the layer's helpers need the context of a tool call")
    headers = request.request.headers if request.request is not None else {}
    return ToolCall(_SERVED.get(ctx.fastmcp), request.protocol_version, headers, request.request_id)


def serve_http_context(mcp: MCPServer, app: Starlette) -> None:
    """For a FastMCP server: what FastMCP's own HTTP app gives its tools, on the app that serves it (the HTTP
    request, for `get_http_request()` and `get_http_headers()`, and the transport's name)."""
    if sdk_internals.fastmcp_under(mcp) is None:
        return
    from fastmcp.server.http import RequestContextMiddleware

    app.state.transport_type = "streamable-http"
    app.add_middleware(RequestContextMiddleware)


def _is_fastmcp(value: object) -> bool:
    fastmcp = sys.modules.get("fastmcp")  # imported by whoever built one; never by the layer
    return fastmcp is not None and isinstance(value, fastmcp.FastMCP)
