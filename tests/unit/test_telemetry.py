"""mcp_cluster/telemetry.py in-process, with the OpenTelemetry SDK's in-memory exporter and reader: a request's span
under the trace context it carries, the MCP SDK's span under ours, the conventions' attributes and histograms, and
nothing touched while no SDK is installed."""

from __future__ import annotations

import json

import pytest
from mcp.server.mcpserver import MCPServer
from mcp.shared import _otel as mcp_otel
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util._once import Once

from mcp_cluster import InstanceSettings, instance_app
from mcp_cluster.logs import session_fingerprint
from mcp_cluster.telemetry import TracedRequests
from tests.utils.asgi import INITIALIZE, JSON_RPC, served

pytestmark = pytest.mark.anyio
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


class Recorded:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()

    def points(self, name: str) -> list:
        """The histogram points of one instrument, as the reader collects them."""
        found = []
        for resource in self.metrics.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture
def otel(monkeypatch):
    """An OpenTelemetry SDK installed for one test, then taken away again (as OpenTelemetry's own test utilities
    reset the globals), so no other test runs traced."""
    recorded = Recorded()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(recorded.spans))
    meter_provider = MeterProvider(metric_readers=[recorded.metrics])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    monkeypatch.setattr(mcp_otel, "_tracer", trace.get_tracer("mcp-python-sdk"))  # the SDK's keeps its first provider
    try:
        yield recorded
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
        trace._TRACER_PROVIDER_SET_ONCE, trace._TRACER_PROVIDER = Once(), None
        metrics._internal._METER_PROVIDER_SET_ONCE, metrics._internal._METER_PROVIDER = Once(), None


def call(request_id: int, meta: dict | None = None) -> dict:
    params = {"name": "whoami", "arguments": {}, **({"_meta": meta} if meta else {})}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def whoami_server() -> MCPServer:
    mcp = MCPServer("traced")

    @mcp.tool()
    def whoami() -> str:
        return "traced1"

    return mcp


async def test_a_call_is_our_span_under_the_callers_then_the_sdks_under_ours(otel):
    app = instance_app(whoami_server(), InstanceSettings("traced1", preset="stateful-json"))
    async with served(app) as client:
        opened = await client.post("/mcp", json=INITIALIZE, headers=JSON_RPC)
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        await client.post(
            "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session | JSON_RPC
        )
        answered = await client.post("/mcp", json=call(2, {"traceparent": TRACEPARENT}), headers=session | JSON_RPC)
        assert answered.json()["result"]["content"][0]["text"] == "traced1"
        await client.delete("/mcp", headers=session)
    spans = [span for span in otel.spans.get_finished_spans() if span.name == "tools/call whoami"]
    ours = next(span for span in spans if span.instrumentation_scope.name == "mcp-cluster")
    sdks = next(span for span in spans if span.instrumentation_scope.name == "mcp-python-sdk")
    assert ours.kind is SpanKind.SERVER and f"{ours.context.trace_id:032x}" == CLIENT_TRACE
    assert f"{ours.parent.span_id:016x}" == CLIENT_SPAN
    assert sdks.context.trace_id == ours.context.trace_id and sdks.parent.span_id == ours.context.span_id
    fingerprint = session_fingerprint(opened.headers["mcp-session-id"])
    assert ours.attributes["mcp.session.id"] == sdks.attributes["mcp.session.id"] == fingerprint
    assert (
        dict(ours.attributes).items()
        >= {
            "mcp.method.name": "tools/call",
            "jsonrpc.request.id": "2",
            "gen_ai.tool.name": "whoami",
            "mcp.protocol.version": "2025-11-25",
            "mcp_cluster.instance": "traced1",
            "http.response.status_code": 200,
        }.items()
    )
    operations = {point.attributes["mcp.method.name"]: point for point in otel.points("mcp.server.operation.duration")}
    assert operations["tools/call"].count == 1 and operations["tools/call"].attributes["gen_ai.tool.name"] == "whoami"
    assert operations["initialize"].count == 1
    (session_point,) = otel.points("mcp.server.session.duration")
    assert session_point.count == 1 and session_point.sum > 0


async def test_the_traceparent_header_is_the_parent_when_the_request_carries_none_in_meta(otel):
    seen: list[bytes] = []
    async with served(TracedRequests(echo(seen), "app1", "/mcp")) as client:
        await client.post("/mcp", json=call(7), headers={"traceparent": TRACEPARENT})
    (span,) = otel.spans.get_finished_spans()
    assert f"{span.parent.span_id:016x}" == CLIENT_SPAN
    carried = json.loads(seen[0])["params"]["_meta"]["traceparent"]
    assert carried == f"00-{CLIENT_TRACE}-{span.context.span_id:016x}-01"  # the next hop's parent: this span


async def test_without_an_sdk_the_request_reaches_the_app_byte_for_byte():
    seen: list[bytes] = []
    body = json.dumps(call(7, {"traceparent": TRACEPARENT, "progressToken": 3})).encode()
    async with served(TracedRequests(echo(seen), "app1", "/mcp")) as client:
        await client.post("/mcp", content=body, headers=JSON_RPC)
    assert seen == [body]


async def test_the_meta_the_client_sent_is_kept_beside_the_context(otel):
    seen: list[bytes] = []
    async with served(TracedRequests(echo(seen), "app1", "/mcp")) as client:
        await client.post("/mcp", json=call(7, {"progressToken": 3}), headers=JSON_RPC)
    message = json.loads(seen[0])
    assert message["params"]["_meta"]["progressToken"] == 3 and "traceparent" in message["params"]["_meta"]
    assert message["params"]["name"] == "whoami" and message["id"] == 7


def echo(seen: list[bytes]):
    """An ASGI app that keeps the body it was given, and checks the content-length it was told."""

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = (await receive())["body"]
        assert dict(scope["headers"])[b"content-length"] == str(len(body)).encode()
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app
