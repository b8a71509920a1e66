"""instance_app in-process, over the ASGI transport: what any MCPServer gets without Redis, and the
mistakes it refuses."""

from __future__ import annotations

import logging

import httpx2
import pytest
from mcp.server.mcpserver import MCPServer

from mcp_cluster import InstanceSettings, instance_app
from mcp_cluster.shared.redis import connect

pytestmark = pytest.mark.anyio


async def test_health_names_the_instance_and_every_response_carries_it():
    app = instance_app(MCPServer("probe"), InstanceSettings("probe1"))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        health = await client.get("/healthz")
    assert health.json() == {"status": "ok", "instance": "probe1"}
    assert health.headers["x-mcp-instance"] == "probe1"


def test_one_server_is_served_once():
    mcp = MCPServer("twice")
    instance_app(mcp, InstanceSettings("one"))
    with pytest.raises(RuntimeError, match="already served by instance_app"):
        instance_app(mcp, InstanceSettings("two"))


def test_shared_keys_need_a_named_server():
    keys = ("ab" * 32,)
    with pytest.raises(ValueError, match="name the server"):
        instance_app(MCPServer(), InstanceSettings("anon", request_state_keys=tuple(bytes.fromhex(k) for k in keys)))


def test_a_redis_client_needs_the_redis_url_it_belongs_to():
    with pytest.raises(ValueError, match="no Redis URL"):
        instance_app(MCPServer("given"), InstanceSettings("given1"), redis=connect("redis://127.0.0.1:1/0"))


@pytest.mark.parametrize(("forward_port", "warned"), [(None, True), (8001, False)])
def test_forwarding_on_the_public_port_of_a_network_address_is_warned_of(caplog, forward_port, warned):
    settings = InstanceSettings(
        "app1",
        listen_host="0.0.0.0",
        front_door="127.0.0.1",  # nginx on loopback, as compose publishes it: no token needed
        session_store="redis",
        redis_url="redis://127.0.0.1:6379/0",
        forward_port=forward_port,
        peer_urls=("http://*:*",),
    )
    with caplog.at_level(logging.WARNING, logger="mcp_cluster"):
        instance_app(MCPServer("cluster"), settings)
    messages = [record.getMessage() for record in caplog.records]
    assert (
        any(message.startswith("FORWARDING ON THE PUBLIC PORT: MCP_FORWARD_PORT is not set") for message in messages)
        == warned
    )
