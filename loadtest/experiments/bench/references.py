"""The two references every figure of the benchmark is a ratio to, served by the same uvicorn as ours:

- `floor`: a bare Starlette JSON route that reads the request and answers a result of the same size as
  `whoami`'s: what the HTTP server and the framework cost before any MCP;
- `bare_sdk`: the demo's own tools on an `MCPServer`, served by the SDK's streamable HTTP app alone, with
  the preset's options (MCP_PRESET): what the SDK costs, before our layer.

    uvicorn --factory loadtest.experiments.bench.references:bare_sdk
"""

from __future__ import annotations

import json
import os

from mcp.server.streamable_http_manager import DEFAULT_MAX_SESSIONS
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.bulletins import MemoryBulletins
from app.counters import MemoryHandleCounters
from app.settings import ServerSettings
from app.tools import Demo, build_server
from mcp_cluster.settings import DEFAULT_ALLOWED_HOSTS, Preset

MCP_PATH = "/mcp"
_WHOAMI = {"instance": "floor", "preset": "none", "session_id": "0" * 32, "protocol_version": "2025-11-25", "pid": 1}


async def _answer(request: Request) -> JSONResponse:
    message = json.loads(await request.body())
    content = [{"type": "text", "text": json.dumps(_WHOAMI, indent=2)}]
    result = {"content": content, "isError": False, "structuredContent": _WHOAMI}
    return JSONResponse({"jsonrpc": "2.0", "id": message.get("id"), "result": result})


def floor() -> Starlette:
    return Starlette(routes=[Route(MCP_PATH, _answer, methods=["POST"])])


def bare_sdk(preset: Preset | None = None) -> Starlette:
    """The demo's tools on the SDK's app alone, with the options of `preset` (default: MCP_PRESET's)."""
    preset = preset or Preset(os.environ.get("MCP_PRESET", Preset.STATEFUL_SSE.value))
    demo = Demo(
        ServerSettings.from_env().data_dir, MemoryHandleCounters(10_000), MemoryBulletins(), "sdk", preset.value
    )
    # At INFO the SDK writes a line per stateless request ("Terminating session: None") through its Rich
    # console handler, which cost more than the call itself: a deployment keeps warnings, as ours does.
    return build_server(demo, log_level="WARNING").streamable_http_app(
        streamable_http_path=MCP_PATH,
        json_response=preset.json_response,
        stateless_http=preset.stateless,
        max_sessions=int(os.environ.get("MCP_MAX_SESSIONS", DEFAULT_MAX_SESSIONS)),  # room for the idle-session count
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=list(DEFAULT_ALLOWED_HOSTS)
        ),
    )
