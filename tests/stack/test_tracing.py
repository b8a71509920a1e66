"""One trace per call across real instances: three uvicorn processes with the Redis store, each run under
`opentelemetry-instrument` as docs/tracing.md runs one, export over OTLP/HTTP to a receiver in the test. A call
relayed from app2 to its owner app1 is one trace: app2's span, app1's under it, the MCP SDK's under that. After
app1's SIGKILL, a call to app2 is one trace too: app2's span (it took the session over), the SDK's under it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from loadtest.client.legacy import McpClient
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import PROJECT_ROOT
from mcp_cluster.logs import session_fingerprint
from tests.utils.clients import session, wait_for
from tests.utils.docs import blocks, shell_env
from tests.utils.otlp import Received, Span, receiver

INSTRUMENT = str(Path(sys.executable).parent / "opentelemetry-instrument")
SOON = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "500"}  # exported within a second
OTEL = {
    "OTEL_SERVICE_NAME": "mcp",
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    **SOON,
}


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    port = free_port()
    env = {**OTEL, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    run_dir = tmp_path_factory.mktemp("traced")
    with (
        receiver(port) as received,
        Stack(run_dir=run_dir, store="redis", port=free_port(), launcher=(INSTRUMENT,), app_env=env) as stack,
    ):
        yield stack, received


def traceparent(trace_id: str) -> dict:
    return {"traceparent": f"00-{trace_id}-{'1' * 16}-01"}


def whoami(client: McpClient, trace_id: str) -> None:
    answer = client.request("tools/call", {"name": "whoami", "arguments": {}, "_meta": traceparent(trace_id)})
    assert answer.result is not None, answer


def trace_of(received: Received, trace_id: str, spans: int) -> list[Span]:
    """The spans of one trace, once `spans` of them have arrived (none more may)."""
    found: list[Span] = []

    def arrived() -> bool:
        found[:] = [span for span in received.snapshot() if span.trace_id == trace_id]
        assert len(found) <= spans, found
        return len(found) == spans

    wait_for(arrived, timeout=15)
    return found


def chain(spans: list[Span]) -> list[Span]:
    """The spans from the one whose parent is the client's, each the next one's parent."""
    by_parent = {span.parent_id: span for span in spans}
    ordered = [by_parent["1" * 16]]
    while (child := by_parent.get(ordered[-1].span_id)) is not None:
        ordered.append(child)
    assert len(ordered) == len(spans), spans
    return ordered


def test_a_relayed_call_is_one_trace_the_relays_span_then_the_owners_then_the_sdks(traced):
    stack, received = traced
    owner = session(stack.instance_url("app1"))
    relay = McpClient(requests.Session(), stack.instance_url("app2"), timeout=(5, 30))
    relay.session_id, relay.protocol_version = owner.session_id, owner.protocol_version
    whoami(relay, "a" * 32)
    relayed, served, sdk = chain(trace_of(received, "a" * 32, spans=3))
    assert (relayed.scope, served.scope, sdk.scope) == ("mcp-cluster", "mcp-cluster", "mcp-python-sdk")
    assert relayed.attributes["mcp_cluster.instance"] == "app2" and relayed.attributes[
        "mcp_cluster.relayed_to"
    ].startswith("app1:")
    assert served.attributes["mcp_cluster.instance"] == "app1" and "mcp_cluster.relayed_to" not in served.attributes
    assert {span.name for span in (relayed, served, sdk)} == {"tools/call whoami"}
    fingerprint = session_fingerprint(owner.session_id)
    assert {span.attributes["mcp.session.id"] for span in (relayed, served, sdk)} == {fingerprint}
    assert owner.session_id.partition(".")[2] not in str(received.snapshot())  # the id itself never leaves
    assert owner.close().status == 200
    wait_for(lambda: {"mcp.server.operation.duration", "mcp.server.session.duration"} <= received.metrics, timeout=15)


def test_a_call_after_a_takeover_is_one_trace(traced):
    stack, received = traced
    client = session(stack.instance_url("app1"))
    relay = McpClient(requests.Session(), stack.instance_url("app2"), timeout=(5, 30))
    relay.session_id, relay.protocol_version = client.session_id, client.protocol_version
    os.killpg(stack.proc("app1").pid, signal.SIGKILL)
    wait_for(lambda: not stack.proc("app1").alive())
    whoami(relay, "b" * 32)
    taken, sdk = chain(trace_of(received, "b" * 32, spans=2))
    assert (taken.scope, sdk.scope) == ("mcp-cluster", "mcp-python-sdk")
    assert taken.attributes["mcp_cluster.instance"] == "app2"
    assert taken.attributes["mcp_cluster.took_over_from"].startswith("app1:")  # the owner process, as logs name it


def test_the_docs_command_exports_a_served_call_over_otlp(tmp_path):
    """docs/tracing.md's block as written: the notes example under opentelemetry-instrument, to a collector on
    127.0.0.1:4318 (this test's receiver, on the port the block names)."""
    port = free_port()
    env = {**shell_env(tmp_path), **SOON, "MCP_LISTEN_PORT": str(port)}
    with receiver(4318) as received:  # the port the block names: a bind that fails says it is taken
        serving = subprocess.Popen(
            ["bash", "-c", blocks()["tracing-export"][0]],
            cwd=PROJECT_ROOT / "examples",
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            client = McpClient(requests.Session(), f"http://127.0.0.1:{port}/mcp", timeout=(5, 30))
            wait_for(lambda: _opens(client), timeout=60)
            answer = client.request(
                "tools/call", {"name": "add_note", "arguments": {"text": "traced"}, "_meta": traceparent("c" * 32)}
            )
            assert answer.result is not None, answer
            ours, sdk = chain(trace_of(received, "c" * 32, spans=2))
        finally:
            os.killpg(serving.pid, signal.SIGTERM)
            serving.wait(timeout=30)
    assert (ours.name, sdk.name) == ("tools/call add_note", "tools/call add_note")


def _opens(client: McpClient) -> bool:
    try:
        return client.initialize().status == 200
    except requests.ConnectionError:
        return False
