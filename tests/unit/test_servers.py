"""Which servers `instance_app` serves (mcp_cluster/servers.py), in-process: a FastMCP 4 server is served as the
SDK's MCPServer is, its tools' context gives session state, its read-only annotations are read, its tools see the
HTTP request as under FastMCP's own app, and what it cannot be served with is refused with the reason."""

from __future__ import annotations

import json

import anyio
import pytest
from fastmcp import Context, FastMCP
from fastmcp.server.auth.providers.jwt import JWTVerifier
from fastmcp.server.dependencies import get_http_headers
from mcp.types import ToolAnnotations
from starlette.responses import PlainTextResponse

from mcp_cluster import InstanceSettings, instance_app, session_state
from mcp_cluster.sdk_internals import tool_annotations
from mcp_cluster.servers import served
from tests.utils.asgi import INITIALIZE, JSON_RPC
from tests.utils.asgi import served as serving

pytestmark = pytest.mark.anyio


def fastmcp_server() -> FastMCP:
    server = FastMCP("fastmcp-test")

    @server.tool
    async def count(ctx: Context) -> int:
        return await session_state(ctx).increment("calls")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    async def agent(ctx: Context) -> str:
        return get_http_headers().get("user-agent", "")

    @server.custom_route("/version", methods=["GET"])
    async def version(_request) -> PlainTextResponse:
        return PlainTextResponse("4")

    return server


def call(request_id: int, name: str) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": {}}}


def result_of(response) -> dict:
    body = response.json() if response.headers["content-type"].startswith("application/json") else None
    if body is None:  # an SSE answer: its one data line
        body = json.loads(next(line[5:] for line in response.text.splitlines() if line.startswith("data:")))
    return body["result"]


async def test_a_fastmcp_server_is_served_with_session_state_and_its_http_request():
    app = instance_app(fastmcp_server(), InstanceSettings("app1", preset="stateful-json"))
    async with serving(app) as client:
        opened = await client.post("/mcp", json=INITIALIZE, headers=JSON_RPC)
        session = {**JSON_RPC, "mcp-session-id": opened.headers["mcp-session-id"], "user-agent": "probe/1"}
        await client.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        counts = [result_of(await client.post("/mcp", json=call(n, "count"), headers=session)) for n in (2, 3)]
        again = result_of(await client.post("/mcp", json=call(3, "count"), headers=session))  # a retry of id 3
        agent = result_of(await client.post("/mcp", json=call(4, "agent"), headers=session))
        route = await client.get("/version")
        ready = await client.get("/readyz")
    assert [c["structuredContent"] for c in counts] == [{"result": 1}, {"result": 2}]
    assert again == counts[1], "a retry with the same id gets the first answer, and counts nothing"
    assert agent["structuredContent"] == {"result": "probe/1"}
    assert route.text == "4" and ready.json()["sessions"] == 1


def test_a_fastmcp_server_stands_for_one_mcp_server_and_is_served_once():
    server = fastmcp_server()
    assert served(server) is served(server)
    instance_app(server, InstanceSettings("app1"))
    with pytest.raises(RuntimeError, match="already served"):
        instance_app(server, InstanceSettings("app1"))


def test_the_annotations_of_a_fastmcp_tool_are_read():
    mcp = served(fastmcp_server())
    assert anyio.run(tool_annotations, mcp, "agent").read_only_hint is True
    assert anyio.run(tool_annotations, mcp, "count") is None
    assert anyio.run(tool_annotations, mcp, "no-such-tool") is None


def test_a_fastmcp_server_with_auth_of_its_own_is_refused_with_where_auth_goes():
    server = FastMCP("guarded", auth=JWTVerifier(public_key="-----BEGIN PUBLIC KEY-----\n", issuer="https://i"))
    with pytest.raises(ValueError, match="MCP_AUTH_JWKS"):
        instance_app(server, InstanceSettings("app1"))


def test_anything_else_is_refused_naming_what_is_served():
    with pytest.raises(TypeError, match=r"an MCPServer or a fastmcp\.FastMCP, not str"):
        instance_app("notes.server:mcp", InstanceSettings("app1"))
