"""The metrics an instance serves on a port of its own (in-process over ASGI for the calls, and a real HTTP
GET of the metrics port): each counter moves by what the requests did, and each bound counts its refusals."""

from __future__ import annotations

import itertools
import os
import signal

import httpx2
import pytest
from mcp.server.mcpserver import MCPServer
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.harness.stack import free_port
from mcp_cluster import InstanceSettings, instance_app
from mcp_cluster.metrics.accumulators import Accumulated, LabelledCounter, LabelledHistogram
from mcp_cluster.metrics.call_timer import CallTimer
from mcp_cluster.sdk_internals import lowlevel_server
from mcp_cluster.settings import SettingsError
from tests.utils.asgi import INITIALIZE, JSON_RPC, served
from tests.utils.metrics import scrape

pytestmark = pytest.mark.anyio


def tools_server() -> MCPServer:
    mcp = MCPServer("metered")

    @mcp.tool()
    def echo(text: str) -> str:
        return text

    @mcp.tool()
    def fail() -> str:
        raise ValueError("this tool always fails")

    return mcp


async def open_session(client: httpx2.AsyncClient) -> dict[str, str]:
    answer = await client.post("/mcp", json=INITIALIZE, headers=JSON_RPC)
    assert answer.status_code == 200, answer.text
    headers = {**JSON_RPC, "mcp-session-id": answer.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await client.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


_ids = itertools.count(2)  # a request id is used once in a session: a repeat is answered, not run again


async def call(client: httpx2.AsyncClient, headers: dict, method: str, params: dict | None = None) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or {}}
    return await client.post("/mcp", json=body, headers=headers)


async def test_calls_are_counted_by_method_and_outcome_and_sessions_are_followed():
    port = free_port()
    settings = InstanceSettings("meter1", preset="stateful-json", metrics_port=port, max_sessions=5)
    async with served(instance_app(tools_server(), settings)) as client:
        sessions = [await open_session(client) for _ in range(2)]
        for _ in range(3):
            await call(client, sessions[0], "tools/call", {"name": "echo", "arguments": {"text": "hi"}})
        await call(client, sessions[1], "tools/call", {"name": "fail", "arguments": {}})
        await call(client, sessions[1], "made/up", {})
        await call(client, sessions[1], "made/up/too", {})
        samples = await scrape(port)
    calls = {key: value for key, value in samples.items() if key[0] == "mcp_calls_total"}
    assert calls == {
        ("mcp_calls_total", (("method", "initialize"), ("outcome", "ok"))): 2,
        ("mcp_calls_total", (("method", "tools/call"), ("outcome", "ok"))): 3,
        ("mcp_calls_total", (("method", "tools/call"), ("outcome", "tool_error"))): 1,
        ("mcp_calls_total", (("method", "other"), ("outcome", "error"))): 2,  # what clients invent shares one label
    }
    assert samples[("mcp_call_duration_seconds_count", (("method", "tools/call"),))] == 4
    assert samples[("mcp_sessions_held", ())] == 2
    assert samples[("mcp_session_limit", ())] == 5
    assert samples[("mcp_ready", ())] == 1 and samples[("mcp_draining", ())] == 0


async def test_each_bound_counts_the_requests_it_refuses():
    port = free_port()
    settings = InstanceSettings("meter2", preset="stateful-json", metrics_port=port, max_sessions=1)
    async with served(instance_app(tools_server(), settings)) as client:
        assert (await scrape(port))[
            ("mcp_refused_total", (("bound", "max_sessions"),))
        ] == 0  # shown before it is reached
        await open_session(client)
        full = await client.post("/mcp", json=INITIALIZE, headers=JSON_RPC)
        too_big = await client.post("/mcp", content=b"[" + b" " * (4 * 1024 * 1024) + b"]", headers=JSON_RPC)
        samples = await scrape(port)
    assert full.status_code == 503
    assert "MCP_MAX_SESSIONS" in full.json()["error"]["message"]  # the SDK's bare message, made actionable
    assert too_big.status_code == 413
    assert samples[("mcp_refused_total", (("bound", "max_sessions"),))] == 1
    assert samples[("mcp_refused_total", (("bound", "body_size"),))] == 1
    assert samples[("mcp_refused_total", (("bound", "sessions_per_client"),))] == 0


def test_the_metrics_port_may_not_take_a_port_the_instance_uses():
    with pytest.raises(SettingsError, match=r"MCP_METRICS_PORT=8000 .* leave out MCP_LISTEN_PORT"):
        InstanceSettings.from_env({"MCP_INSTANCE_ID": "m", "MCP_METRICS_PORT": "8000"})
    with pytest.raises(SettingsError, match=r"MCP_METRICS_PORT=7999 with MCP_WORKERS=2 takes ports 7999\.\.8000"):
        InstanceSettings("m", preset="stateless-json", workers=2, metrics_port=7999)


async def test_redis_commands_are_timed_and_a_stalled_redis_is_counted(redis_server):
    url, server = redis_server
    port = free_port()
    settings = InstanceSettings(
        "meter3", preset="stateful-json", session_store="redis", redis_url=url, metrics_port=port
    )
    async with served(instance_app(tools_server(), settings)) as client:
        await open_session(client)
        before = await scrape(port)
        assert before[("mcp_redis_command_duration_seconds_count", ())] > 0
        assert before[("mcp_redis_errors_total", ())] == 0
        assert before[("mcp_sessions_owned", ())] == 1
        os.kill(server.pid, signal.SIGSTOP)  # Redis stalls: every command times out
        try:
            refused = await client.post("/mcp", json=INITIALIZE, headers=JSON_RPC)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        after = await scrape(port)
    assert refused.status_code == 503 and "Redis" in refused.json()["error"]["message"]
    assert after[("mcp_redis_errors_total", ())] >= 1


def test_the_call_histogram_reads_as_prometheus_clients_own_would():
    """The accumulators (plain numbers, for every call) against prometheus-client's Histogram and Counter
    fed the same values: the same exposition, bucket bounds inclusive, +Inf last."""
    ours = LabelledHistogram("t_seconds", "t", "method", [0.001, 0.01, 0.1])
    ours_count = LabelledCounter("t_calls", "t", ["method"])
    registry = CollectorRegistry()
    registry.register(Accumulated(ours, ours_count))
    reference_registry = CollectorRegistry()
    reference = Histogram("t_seconds", "t", ["method"], buckets=[0.001, 0.01, 0.1], registry=reference_registry)
    reference_count = Counter("t_calls", "t", ["method"], registry=reference_registry)
    for method, seconds in [("a", 0.001), ("a", 0.0011), ("a", 0.5), ("b", 0.0), ("a", 0.1)]:
        ours.observe(seconds, method)
        ours_count.add(method)
        reference.labels(method).observe(seconds)
        reference_count.labels(method).inc()
    samples = {
        name: [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(generate_latest(r).decode())
            for s in family.samples
            if not s.name.endswith("_created")  # when each series began: prometheus-client's own
        ]
        for name, r in (("ours", registry), ("reference", reference_registry))
    }
    assert sorted(samples["ours"], key=repr) == sorted(samples["reference"], key=repr)


def test_without_a_metrics_port_no_call_is_timed():
    timed, untimed = tools_server(), tools_server()
    instance_app(timed, InstanceSettings("meter4", metrics_port=free_port()))
    instance_app(untimed, InstanceSettings("meter5"))
    assert [type(m) for m in lowlevel_server(timed).middleware].count(CallTimer) == 1
    assert CallTimer not in [type(m) for m in lowlevel_server(untimed).middleware]
