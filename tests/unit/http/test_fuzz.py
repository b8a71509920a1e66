"""A fuzz test of the JSON-RPC entry point, in-process over the ASGI transport: whatever body and headers
arrive on /mcp, the instance answers below 500 and goes on serving a well-formed request. The budget is
MCP_FUZZ_EXAMPLES examples per preset (CI: the default; longer on demand, e.g. MCP_FUZZ_EXAMPLES=5000)."""

from __future__ import annotations

import json
import os

import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.asgi import create_app
from mcp_cluster import InstanceSettings
from tests.utils.asgi import served

EXAMPLES = int(os.environ.get("MCP_FUZZ_EXAMPLES", "300"))
METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/read",
    "resources/subscribe",
    "prompts/get",
    "notifications/initialized",
    "subscriptions/listen",
    "completion/complete",
]
VERSIONS = [None, "2025-11-25", "2025-06-18", "2026-07-28", "1999-01-01", "", "2025-11-25\x00"]
ACCEPTS = ["application/json, text/event-stream", "application/json", "text/event-stream", "*/*", "text/html"]
TYPES = ["application/json", "application/json; charset=utf-8", "text/plain", "", "application/x-www-form-urlencoded"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0", 2]), "method": st.sampled_from(METHODS) | st.text(max_size=20)},
    optional={"id": st.integers() | st.text(max_size=8) | st.none(), "params": json_values},
)
bodies = (
    messages.map(lambda m: json.dumps(m).encode())
    | st.lists(messages, max_size=3).map(lambda ms: json.dumps(ms).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
)
header_sets = st.fixed_dictionaries(
    {"content-type": st.sampled_from(TYPES), "accept": st.sampled_from(ACCEPTS)},
    optional={
        "mcp-protocol-version": st.sampled_from([v for v in VERSIONS if v is not None]),
        "mcp-session-id": st.text(alphabet="abcdef0123456789.app", max_size=40),
        "mcp-method": st.sampled_from(METHODS),
        "mcp-name": st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", max_size=12),
    },
)
WELL_FORMED = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}},
}


@pytest.fixture(scope="module", params=["stateful-sse/redis", "stateful-json/memory", "stateless-json/memory"])
def instance(request):
    """One instance of the demo server (on a real redis-server for the Redis store), served in a thread of
    its own for the (synchronous) fuzz loop."""
    preset, store = request.param.split("/")
    redis_url = request.getfixturevalue("redis_server")[0] if store == "redis" else None
    settings = InstanceSettings(f"fuzz-{preset}", preset=preset, session_store=store, redis_url=redis_url)
    with anyio.from_thread.start_blocking_portal() as portal:
        app = create_app(settings)
        with portal.wrap_async_context_manager(served(app)) as client:
            yield portal, client


def test_any_request_is_answered_below_500_and_the_instance_keeps_serving(instance):
    portal, client = instance

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(body=bodies, headers=header_sets)
    def answered(body: bytes, headers: dict[str, str]) -> None:
        safe = {name: value.encode("latin-1", "replace").decode("latin-1") for name, value in headers.items()}
        response = portal.call(lambda: client.post("/mcp", content=body, headers=safe, timeout=10))
        assert response.status_code < 500, (response.status_code, response.text[:300])

    answered()
    accept = {"accept": ACCEPTS[0], "content-type": "application/json"}
    after = portal.call(lambda: client.post("/mcp", json=WELL_FORMED, headers=accept, timeout=10))
    assert after.status_code == 200, after.text
