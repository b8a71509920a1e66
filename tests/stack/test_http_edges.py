"""What every instance does at the HTTP level: the instance header, health, Host protection, structured logs."""

from __future__ import annotations

import json

import pytest
import requests

from loadtest.client.legacy import McpClient
from mcp_cluster.logs import session_fingerprint
from tests.utils.clients import wait_for


def test_every_response_names_the_instance(stack_for):
    stack = stack_for("stateful-sse")
    base = stack.instance_url("app2").removesuffix("/mcp")
    health = requests.get(f"{base}/healthz", timeout=5)
    ready = requests.get(f"{base}/readyz", timeout=5)
    not_found = McpClient(requests.Session(), f"{base}/mcp")
    not_found.session_id = "gone"
    lost = not_found.call_tool("whoami")
    assert health.json() == {"status": "ok", "instance": "app2"}
    readiness = ready.json()
    assert isinstance(readiness.pop("sessions"), int)
    sealing_key, keys = readiness.pop("sealing_key"), readiness.pop("keys")
    assert sealing_key in keys
    assert readiness == {
        "status": "ready",
        "instance": "app2",
        "preset": "stateful-sse",
        "store": "memory",
        "request_state_keys": "redis",
    }
    assert [r.headers["X-Mcp-Instance"] for r in (health, ready)] == ["app2", "app2"]
    assert (lost.status, lost.instance) == (404, "app2")


def test_dns_rebinding_protection_stays_on_with_actionable_errors(stack_for):
    url = stack_for("stateless-json").instance_url("app1")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    wrong_host = requests.post(url, json=body, headers={**headers, "Host": "attacker.example"}, timeout=5)
    wrong_origin = requests.post(url, json=body, headers={**headers, "Origin": "http://attacker.example"}, timeout=5)
    assert wrong_host.status_code == 421
    assert wrong_host.json()["error"]["message"].startswith(
        "Host header 'attacker.example' is not allowed by this server; did not run: add it to MCP_ALLOWED_HOSTS"
    )
    assert wrong_origin.status_code == 403
    assert wrong_origin.json()["error"]["message"] == (
        "Origin header 'http://attacker.example' is not allowed by this server; did not run: add it to "
        "MCP_ALLOWED_ORIGINS"
    )
    assert wrong_host.headers["X-Mcp-Instance"] == "app1"


def test_nginx_forwards_the_client_host_so_localhost_names_work(stack_for):
    stack = stack_for("stateless-json")
    client = McpClient(requests.Session(), stack.url.replace("127.0.0.1", "localhost"))
    assert client.initialize().status == 200


def test_logs_are_json_lines_with_instance_session_and_method(stack_for):
    stack = stack_for("stateful-json")
    client = McpClient(requests.Session(), stack.instance_url("app3"))
    client.initialize()
    client.call_tool("whoami")

    fingerprint = session_fingerprint(client.session_id)

    def logged_calls():
        entries = [parse(line) for line in (stack.run_dir / "app3.log").read_text().splitlines()]
        return [e for e in entries if e.get("session") == fingerprint and e.get("rpc_method") == "tools/call"]

    calls = wait_for(logged_calls)  # the line is written just after the response is sent
    assert calls[-1]["instance"] == "app3"
    assert calls[-1]["status"] == 200
    assert client.session_id not in (stack.run_dir / "app3.log").read_text()  # the id itself is never logged


def parse(line: str) -> dict:
    try:
        return json.loads(line)
    except ValueError:  # a line still being written
        return {}


def test_session_ids_name_their_instance_and_only_it_serves_them(stack_for):
    stack = stack_for("stateful-json")
    client = McpClient(requests.Session(), stack.instance_url("app2"))
    client.initialize()
    prefix, _, raw = client.session_id.partition(".")
    assert prefix == "app2" and len(raw) == 32
    assert client.call_tool("whoami").result["structuredContent"]["instance"] == "app2"
    elsewhere = McpClient(requests.Session(), stack.instance_url("app1"))
    elsewhere.session_id, elsewhere.protocol_version = client.session_id, client.protocol_version
    lost = elsewhere.call_tool("whoami")
    assert (lost.status, lost.error["message"]) == (404, "Session not found")


def test_a_stateless_server_answers_a_get_with_405_at_once(stack_for):
    stack = stack_for("stateless-json")
    headers = {"Accept": "text/event-stream"}
    refused = requests.get(stack.url, headers=headers, timeout=5)  # through nginx; held open before, 45 s
    assert refused.status_code == 405 and refused.headers["Allow"] == "POST"
    assert refused.json()["error"]["code"] == -32600 and "opens no GET stream" in refused.json()["error"]["message"]
    assert McpClient(requests.Session(), stack.url).call_tool("whoami").status == 200


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_deeply_nested_json_gets_a_parse_error_on_either_store(stack_for, store):
    stack = stack_for("stateful-sse", "session", store)
    client = McpClient(requests.Session(), stack.url)
    client.initialize()
    nested = b"[" * 100_000 + b"]" * 100_000
    for headers in (
        {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
        client.headers(),
    ):
        answer = requests.post(stack.url, data=nested, headers=headers, timeout=10)  # without a session, and with
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == -32700
    assert client.call_tool("whoami").status == 200
