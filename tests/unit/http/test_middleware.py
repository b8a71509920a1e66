"""The middleware around the SDK's app, in-process over ASGI: session ids leave prefixed with the instance
and come back bare, every response names its instance, and the SDK's Host rejection names the setting."""

from __future__ import annotations

import json
import logging

import pytest
from starlette.types import Receive, Scope, Send

from mcp_cluster.http.messages import header
from mcp_cluster.http.middleware import InstanceMiddleware, RejectionMessages, SessionIdPrefix
from mcp_cluster.logs import session_fingerprint
from mcp_cluster.metrics import InstanceMetrics

pytestmark = pytest.mark.anyio


class Recorded:
    """An inner ASGI app that answers with a session id and keeps the request it saw."""

    def __init__(self, status: int = 200, session_id: bytes = b"0123abcd", body: bytes = b"ok") -> None:
        self.status, self.session_id, self.body = status, session_id, body
        self.seen: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append(scope)
        headers = [(b"mcp-session-id", self.session_id)] if self.session_id else []
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class Reading(Recorded):
    """A Recorded app that reads the request body first, as the SDK does."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await super().__call__(scope, receive, send)


async def exchange(app, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"") -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": headers or [], "query_string": b""}
    await app(scope, receive, send)
    return sent


async def test_session_ids_leave_with_the_instance_prefix_and_come_back_without_it():
    inner = Recorded()
    started, _ = await exchange(SessionIdPrefix(inner, "app2"), [(b"mcp-session-id", b"app2.0123abcd")])
    assert header(started["headers"], b"mcp-session-id") == "app2.0123abcd"
    assert header(inner.seen[0]["headers"], b"mcp-session-id") == "0123abcd"


async def test_an_id_the_owner_already_prefixed_keeps_the_owners_prefix():
    started, _ = await exchange(SessionIdPrefix(Recorded(session_id=b"app1.0123abcd"), "app2"))
    assert header(started["headers"], b"mcp-session-id") == "app1.0123abcd"


async def test_every_response_names_the_instance():
    started, _ = await exchange(InstanceMiddleware(Recorded(), "app3"))
    assert header(started["headers"], b"x-mcp-instance") == "app3"


async def test_the_access_log_is_off_unless_asked_and_then_names_each_calls_method(caplog):
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}).encode()
    with caplog.at_level(logging.INFO, logger="mcp_cluster.access"):
        await exchange(InstanceMiddleware(Reading(), "app3"), body=call)
        assert not [record for record in caplog.records if record.name == "mcp_cluster.access"]
        await exchange(InstanceMiddleware(Reading(), "app3", access_log=True), body=call)
        named = [(b"mcp-method", b"tools/list")]  # 2026-07-28: the header names it, the body is not read for it
        await exchange(InstanceMiddleware(Reading(), "app3", access_log=True), named, body=b"{}")
    logged = [record.fields for record in caplog.records if record.name == "mcp_cluster.access"]
    assert [fields["rpc_method"] for fields in logged] == ["tools/call", "tools/list"]
    assert (logged[0]["status"], logged[0]["session"]) == (200, session_fingerprint("0123abcd"))


async def test_the_sdks_host_rejection_becomes_a_json_rpc_error_naming_the_setting():
    rejecting = Recorded(status=421, session_id=b"", body=b"Invalid Host header")
    started, body = await exchange(RejectionMessages(rejecting, InstanceMetrics(), 10), [(b"host", b"evil.example")])
    assert started["status"] == 421 and header(started["headers"], b"content-type") == "application/json"
    error = json.loads(body["body"])["error"]
    assert error["code"] == -32600 and "'evil.example'" in error["message"] and "MCP_ALLOWED_HOSTS" in error["message"]


async def test_the_sdks_content_type_rejection_becomes_a_json_rpc_error_saying_what_to_send():
    rejecting = Recorded(status=400, session_id=b"", body=b"Invalid Content-Type header")
    started, body = await exchange(
        RejectionMessages(rejecting, InstanceMetrics(), 10), [(b"content-type", b"text/plain")]
    )
    assert started["status"] == 400 and header(started["headers"], b"content-type") == "application/json"
    assert json.loads(body["body"])["error"] == {
        "code": -32600,
        "message": "Content-Type header 'text/plain' is not accepted; did not run: send the JSON-RPC message as "
        "application/json",
    }


async def test_another_400_passes_through_unchanged():
    passing = Recorded(status=400, session_id=b"", body=b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700}}')
    started, body = await exchange(RejectionMessages(passing, InstanceMetrics(), 10))
    assert started["status"] == 400 and body["body"] == b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700}}'


@pytest.mark.parametrize(("relayed", "counted"), [(False, 1), (True, 0)])
async def test_a_refusal_is_counted_once_where_the_bound_is_not_again_where_it_is_relayed(relayed, counted):
    async def too_large(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-mcp-served-by", b"app2")] if relayed else []
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    metrics = InstanceMetrics()
    started, _ = await exchange(RejectionMessages(too_large, metrics, 10))
    assert started["status"] == 413
    assert metrics.registry.get_sample_value("mcp_refused_total", {"bound": "body_size"}) == counted
