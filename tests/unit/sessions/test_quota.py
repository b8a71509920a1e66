"""How many sessions one client may hold (mcp_cluster/sessions/quota.py), in-process: requests racing to open sessions
for one client address get exactly the bound, on one instance (memory store) and across two instances sharing
a real redis-server (Redis store); another address is not held back, and an ended session frees its slot."""

from __future__ import annotations

import anyio
import pytest
from mcp.server.mcpserver import MCPServer

from mcp_cluster import InstanceSettings, instance_app
from mcp_cluster.http.clients import client_address
from mcp_cluster.sessions.quota import MAX_OPENING_BYTES
from tests.utils.asgi import INITIALIZE, JSON_RPC, served

pytestmark = pytest.mark.anyio
LIMIT = 5
RACING = 60


def app_of(instance_id: str, **settings):
    server = MCPServer("quota")
    return instance_app(server, InstanceSettings(instance_id, max_sessions_per_address=LIMIT, **settings))


async def open_from(client, address: str):
    return await client.post("/mcp", json=INITIALIZE, headers={**JSON_RPC, "x-forwarded-for": address})


async def race(clients, address: str) -> list:
    """RACING initializes from `address` at once, spread over `clients`."""
    answers = []

    async def one(n: int) -> None:
        answers.append(await open_from(clients[n % len(clients)], address))

    async with anyio.create_task_group() as group:
        for n in range(RACING):
            group.start_soon(one, n)
    return answers


def counted(answers) -> tuple[int, int]:
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 429}, statuses
    return statuses.count(200), statuses.count(429)


async def test_racing_opens_from_one_address_get_exactly_the_bound_on_one_instance():
    async with served(app_of("app1")) as client:
        answers = await race([client], "198.51.100.7")
        other = await open_from(client, "198.51.100.8")
        as_a_hop = await client.post(  # no instance forwards here (the memory store): the header buys nothing
            "/mcp", json=INITIALIZE, headers={**JSON_RPC, "x-forwarded-for": "198.51.100.7", "x-mcp-forwarded": "x"}
        )
    assert counted(answers) == (LIMIT, RACING - LIMIT) and as_a_hop.status_code == 429
    refused = next(answer for answer in answers if answer.status_code == 429).json()["error"]
    assert refused == {
        "code": -32000,
        "message": f"this client address holds {LIMIT} sessions on this instance, the most it may "
        "(MCP_MAX_SESSIONS_PER_ADDRESS); did not run: end one (DELETE) or let one idle out, then open another",
    }
    assert other.status_code == 200


async def test_with_the_redis_store_the_bound_is_the_cluster_s_and_an_ended_session_frees_its_slot(redis_url):
    shared = {"session_store": "redis", "redis_url": redis_url}
    async with served(app_of("app1", **shared)) as first, served(app_of("app2", **shared)) as second:
        answers = await race([first, second], "203.0.113.9")
        opened = [answer for answer in answers if answer.status_code == 200]
        session = {"mcp-session-id": opened[0].headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        full = await open_from(second, "203.0.113.9")
        owner = first if opened[0].headers["x-mcp-instance"] == "app1" else second  # in-process: no hop between them
        ended = await owner.delete("/mcp", headers={**session, "x-forwarded-for": "203.0.113.9"})
        again = await open_from(second, "203.0.113.9")
    assert counted(answers) == (LIMIT, RACING - LIMIT)
    assert {answer.headers["x-mcp-instance"] for answer in opened} == {"app1", "app2"}  # both counted in one
    message = full.json()["error"]["message"]
    assert full.status_code == 429 and message.startswith(f"this client address holds {LIMIT} sessions, the most")
    assert ended.status_code == 200, ended.text
    assert again.status_code == 200, again.text


def test_a_client_is_the_address_nginx_saw_and_an_ipv6_client_its_64():
    def scope(forwarded: str | None, peer: str = "10.0.0.5") -> dict:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
        return {"type": "http", "headers": headers, "client": (peer, 40000)}

    assert client_address(scope(None)) == "10.0.0.5"
    assert client_address(scope("1.2.3.4, 192.0.2.1")) == "192.0.2.1"  # what a client wrote first is not trusted
    assert client_address(scope("2001:db8:1:2:aaaa::1")) == client_address(scope("2001:db8:1:2:bbbb::9"))
    assert client_address(scope("2001:db8:1:2::1")) != client_address(scope("2001:db8:1:3::1"))
    assert client_address(scope("::ffff:192.0.2.1")) == "192.0.2.1"


async def test_initialize_params_above_16_kib_are_refused_saying_so_and_what_is_not_kept_costs_nothing():
    """Memory store: the SDK keeps protocolVersion, capabilities and clientInfo for the session's life (the
    Redis store's record too: tests/stack/test_redis_lockdown.py); other params it drops."""

    def padded(name: int, elsewhere: int = 0) -> dict:
        params = {**INITIALIZE["params"], "clientInfo": {"name": "x" * name, "version": "1"}, "pad": "y" * elsewhere}
        return {**INITIALIZE, "params": params}

    async with served(app_of("app1")) as client:
        refused = await client.post("/mcp", json=padded(MAX_OPENING_BYTES), headers=JSON_RPC)
        opened = await client.post("/mcp", json=padded(MAX_OPENING_BYTES - 512, elsewhere=100_000), headers=JSON_RPC)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == -32602 and error["message"].endswith(
        f"bytes of protocolVersion, capabilities and clientInfo; a session keeps at most {MAX_OPENING_BYTES} bytes "
        "of them; did not run"
    )
    assert opened.status_code == 200
