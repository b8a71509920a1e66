"""ASGI middleware around the SDK's app: the instance header, the access log, actionable rejections."""

from __future__ import annotations

import logging
import time
from typing import TypedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_cluster.http.messages import (
    SERVED_BY_HEADER,
    SESSION_ID_HEADER,
    header,
    json_rpc_error,
    parse_json,
    send_error,
)
from mcp_cluster.logs import session_fingerprint
from mcp_cluster.metrics import Bound, InstanceMetrics
from mcp_cluster.shared.runs import DID_NOT_RUN, NOT_RUN

INSTANCE_HEADER = "x-mcp-instance"
_LOGGED_BODY_BYTES = 64 * 1024
access_log = logging.getLogger("mcp_cluster.access")
# The SDK's plain-text rejection bodies, the header each one is about, and what fixes it.
_SDK_REJECTIONS = {
    b"Invalid Host header": (
        "host",
        f"is not allowed by this server; {NOT_RUN}: add it to MCP_ALLOWED_HOSTS "
        "(and have the proxy forward the client's Host, as nginx's $http_host does)",
    ),
    b"Invalid Origin header": ("origin", f"is not allowed by this server; {NOT_RUN}: add it to MCP_ALLOWED_ORIGINS"),
    b"Invalid Content-Type header": (
        "content-type",
        f"is not accepted; {NOT_RUN}: send the JSON-RPC message as application/json",
    ),
}


_SDK_FULL = b"Too many open sessions"  # the SDK's whole message when MCP_MAX_SESSIONS are open
_OWN_FULL = b"(MCP_MAX_SESSIONS)"  # ours (a takeover past the bound, and the SDK's once rewritten)
_HELD_STATUSES = (400, 403, 421, 503)
_BOUND_OF_STATUS = {413: Bound.BODY_SIZE, 429: Bound.SESSIONS_PER_CLIENT}  # no other bound answers these
CONNECTION_CLOSE = (b"connection", b"close")


class _Response(TypedDict, total=False):
    """What the access log reads of a response's start."""

    status: int
    headers: list[tuple[bytes, bytes]]


class InstanceMiddleware:
    """Adds `X-Mcp-Instance` to every response, writes one JSON access-log line per request (with
    `access_log`), and knows how long the instance has had no request in flight (a stopping instance waits
    for that)."""

    def __init__(self, app: ASGIApp, instance_id: str, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log
        self.instance_header = (INSTANCE_HEADER.encode(), instance_id.encode())
        self.in_flight = 0
        self.last_done = time.monotonic()
        self.closing = False  # stopping: every response asks the client to close the connection, so none is reused

    def quiet_seconds(self) -> float:
        """How long no request has been in flight here (0 while one is)."""
        return 0.0 if self.in_flight else time.monotonic() - self.last_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        level = logging.INFO if scope["path"] == "/mcp" else logging.DEBUG
        logged = self.access_log and access_log.isEnabledFor(level)
        request_headers = scope["headers"]
        rpc_method = header(request_headers, b"mcp-method") if logged else None
        first_body: list[bytes] = []  # the JSON-RPC method comes from the body when no header names it
        response: _Response = {}

        async def receive_and_keep() -> Message:
            message = await receive()
            if not first_body and message["type"] == "http.request":
                first_body.append(message.get("body", b""))
            return message

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), self.instance_header]
                if self.closing:
                    headers.append(CONNECTION_CLOSE)
                message = {**message, "headers": headers}
                response["status"] = message["status"]
                response["headers"] = headers
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, receive_and_keep if logged and rpc_method is None else receive, send_with_header)
        finally:
            self.in_flight -= 1
            self.last_done = time.monotonic()
            if logged:
                session_id = header(request_headers, SESSION_ID_HEADER) or header(
                    response.get("headers", ()), SESSION_ID_HEADER
                )
                fields = {
                    "http_method": scope["method"],
                    "path": scope["path"],
                    "status": response.get("status"),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "session": session_fingerprint(session_id),
                    "rpc_method": rpc_method or _rpc_method(first_body[0] if first_body else b""),
                }
                access_log.log(level, "request", extra={"fields": fields})


class SessionIdPrefix:
    """Session ids leave as `<instance>.<id>` and come back without the prefix, so a balancer can route
    a session to the instance that holds it (nginx's `session` policy) with no state of its own.
    An id that already has a prefix (a response forwarded from the session's owner) keeps the owner's."""

    def __init__(self, app: ASGIApp, instance_id: str) -> None:
        self.app = app
        self.prefix = f"{instance_id}.".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [
            (key, value.partition(b".")[2] or value if key == SESSION_ID_HEADER else value)
            for key, value in scope.get("headers", [])
        ]

        async def add_prefix(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        (key, self.prefix + value if key.lower() == SESSION_ID_HEADER and b"." not in value else value)
                        for key, value in message.get("headers", [])
                    ],
                }
            await send(message)

        await self.app({**scope, "headers": headers}, receive, add_prefix)


class StatelessGetRefused:
    """A stateless server has no session to send anything for, so its GET stream would stay silent until the
    client gives up: a GET of the MCP path gets 405 at once instead, which the spec allows."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == self.path:
            message = (
                f"this server is stateless and opens no GET stream; {NOT_RUN}: POST each request, answers come on "
                "its response"
            )
            await send_error(send, 405, -32600, message, headers=[(b"allow", b"POST")])
            return
        await self.app(scope, receive, send)


class RejectionMessages:
    """Turns the SDK's plain-text Host, Origin and Content-Type rejections (421, 403, 400) and its bare
    "Too many open sessions" (503) into JSON-RPC errors that name the fix, and counts the requests each of the
    instance's bounds refuses (`mcp_refused_total`)."""

    def __init__(self, app: ASGIApp, metrics: InstanceMetrics, max_sessions: int) -> None:
        self.app = app
        self.metrics = metrics
        self.full = json_rpc_error(
            -32603,
            f"this instance holds {max_sessions} sessions, the most it may (MCP_MAX_SESSIONS); {DID_NOT_RUN}, which "
            "the balancer may send to another instance, or end sessions you no longer use (DELETE)",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def rewrite(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if status in _HELD_STATUSES:
                    held.append(message)  # wait for the body to know whether it is the SDK's rejection
                    return
                if (bound := _BOUND_OF_STATUS.get(status)) is not None and not _relayed(message):
                    self.metrics.refuse(bound)
            if held and message["type"] == "http.response.body":
                start, body = held.pop(), message.get("body", b"")
                replaced = self._replacement(scope, start["status"], body, _relayed(start))
                if replaced is not None:
                    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(replaced)).encode())]
                    start, message = {**start, "headers": headers}, {"type": "http.response.body", "body": replaced}
                await send(start)
            await send(message)

        await self.app(scope, receive, rewrite)
        if held:  # a rejection that never sent a body
            await send(held.pop())

    def _replacement(self, scope: Scope, status: int, body: bytes, relayed: bool) -> bytes | None:
        """The body that replaces an SDK rejection's (None: keep it); an instance at MCP_MAX_SESSIONS is counted."""
        if status != 503:
            known = _SDK_REJECTIONS.get(body)
            return _rejection_body(scope, *known) if known is not None else None
        sdk_full = _SDK_FULL in body
        if (sdk_full or _OWN_FULL in body) and not relayed:
            self.metrics.refuse(Bound.MAX_SESSIONS)
        return self.full if sdk_full else None


def _relayed(start: Message) -> bool:
    """An answer relayed from the session's owner, which counted its own refusal."""
    return header(start.get("headers", []), SERVED_BY_HEADER) is not None


def _rejection_body(scope: Scope, name: str, fix: str) -> bytes:
    value = header(scope.get("headers", []), name.encode())
    return json_rpc_error(-32600, f"{name.title()} header {value!r} {fix}")


def _rpc_method(body: bytes) -> str | None:
    """The JSON-RPC method of a small request body; "response" for a client's answer to the server."""
    if not body or len(body) >= _LOGGED_BODY_BYTES:
        return None
    message = parse_json(body)
    if isinstance(message, dict):
        return message.get("method") or ("response" if "result" in message or "error" in message else None)
    return "batch" if isinstance(message, list) else None
