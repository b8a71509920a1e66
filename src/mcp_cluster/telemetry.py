"""OpenTelemetry, by the MCP semantic conventions: one trace per call across instances, and the
`mcp.server.operation.duration` and `mcp.server.session.duration` histograms.

Through the OpenTelemetry API alone (the MCP SDK's own dependency): nothing is recorded, and no request is touched,
until the process installs an OpenTelemetry SDK (docs/tracing.md). Then each MCP request an instance takes is a
server span, and the span's context rides on in the request's own `params._meta` (`traceparent`, where MCP
carries it): a relayed call is the relay's span, the owner's under it, and the MCP SDK's under that. Session ids
appear only as the logs show them (`logs.session_fingerprint`)."""

from __future__ import annotations

import json
import time
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics._internal import _ProxyMeterProvider  # the API's own, until an SDK is set
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_cluster import sdk_internals
from mcp_cluster.http.messages import (
    FORWARD_HEADER,
    MAX_BODY_BYTES,
    PROTOCOL_VERSION_HEADER,
    SESSION_ID_HEADER,
    ClientGone,
    Refused,
    header,
    parse_json,
    read_body,
    replay,
    send_error,
)
from mcp_cluster.logs import session_fingerprint

METER = metrics.get_meter("mcp-cluster")
OPERATION_DURATION = METER.create_histogram(
    "mcp.server.operation.duration", unit="s", description="MCP request or notification duration, on the server"
)
SESSION_DURATION = METER.create_histogram(
    "mcp.server.session.duration", unit="s", description="How long a session lived on this instance"
)
INSTANCE = "mcp_cluster.instance"  # the instance that made the span: one process may serve several in tests


def tracing() -> bool:
    """Whether an OpenTelemetry SDK is installed for traces (the API's own provider records nothing)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def measuring() -> bool:
    """Whether an OpenTelemetry SDK is installed for metrics (the API's own provider records nothing)."""
    return not isinstance(metrics.get_meter_provider(), metrics.NoOpMeterProvider | _ProxyMeterProvider)


class TracedRequests:
    """Each POST of an MCP request to `path` as a server span named as the conventions name it (`tools/call
    whoami`), the child of the trace context the request carries (its `_meta`, else its `traceparent` header),
    which the request then carries on as this span's: to the owner it is relayed to, and to the MCP SDK's span."""

    def __init__(self, app: ASGIApp, instance_id: str, path: str) -> None:
        self.app, self.instance_id, self.path = app, instance_id, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST" or not tracing():
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, MAX_BODY_BYTES)
        except ClientGone:
            return
        except Refused as exc:
            await send_error(send, exc.status, exc.code, str(exc), exc.headers)
            return
        message = parse_json(body)
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            await self.app(scope, replay(body, receive), send)  # an answer, or not JSON-RPC: the SDK says what
            return
        params: dict[str, Any] = message["params"] if isinstance(message.get("params"), dict) else {}
        meta: dict[str, Any] = params["_meta"] if isinstance(params.get("_meta"), dict) else {}
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        carried = meta if "traceparent" in meta else headers  # MCP's carrier first, then W3C's header
        method, target = message["method"], params.get("name")
        tracer = trace.get_tracer_provider().get_tracer("mcp-cluster")  # the provider's now: no proxy's cache
        with tracer.start_as_current_span(
            f"{method} {target}" if isinstance(target, str) else method,
            kind=SpanKind.SERVER,
            context=propagate.extract(carried),
            attributes=_attributes(message, params, scope, self.instance_id),
        ) as span:

            async def answered(reply: Message) -> None:
                if reply["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", reply["status"])
                    if reply["status"] >= 500:
                        span.set_attribute("error.type", str(reply["status"]))
                        span.set_status(StatusCode.ERROR)
                await send(reply)

            if header(scope["headers"], FORWARD_HEADER.encode()) is None:
                scope, body = _carried(scope, message, params)
            # else a hop, whose signature covers its body: the router carries this span on once it has checked it
            await self.app(scope, replay(body, receive), answered)


def carrying(scope: Scope, body: bytes) -> tuple[Scope, bytes]:
    """The request with the current span's context in its `params._meta` (the next hop's parent, and the MCP SDK
    span's), and its content-length to match; as it was, and not even parsed, while no span records."""
    if not trace.get_current_span().is_recording():
        return scope, body
    message = parse_json(body)
    if not isinstance(message, dict):
        return scope, body
    return _carried(scope, message, message["params"] if isinstance(message.get("params"), dict) else {})


def _carried(scope: Scope, message: dict[str, Any], params: dict[str, Any]) -> tuple[Scope, bytes]:
    """`carrying` of a request already parsed (`params` its params, or {})."""
    meta = {**params["_meta"]} if isinstance(params.get("_meta"), dict) else {}
    propagate.inject(meta)
    message["params"] = {**params, "_meta": meta}
    body = json.dumps(message, separators=(",", ":")).encode()
    headers = [(name, value) for name, value in scope["headers"] if name != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}, body


def _attributes(message: dict[str, Any], params: dict[str, Any], scope: Scope, instance_id: str) -> dict[str, str]:
    attributes = {"mcp.method.name": message["method"], INSTANCE: instance_id}
    if "id" in message:
        attributes["jsonrpc.request.id"] = str(message["id"])
    if (session_id := header(scope["headers"], SESSION_ID_HEADER)) is not None:
        attributes["mcp.session.id"] = session_fingerprint(session_id) or ""
    if (version := header(scope["headers"], PROTOCOL_VERSION_HEADER)) is not None:
        attributes["mcp.protocol.version"] = version
    name = params.get("name")
    if message["method"] == "tools/call" and isinstance(name, str):
        attributes |= {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
    return attributes


def note(attribute: str, value: str) -> None:
    """Set an attribute of the request's span (how the instance routed it); nothing while no SDK records."""
    trace.get_current_span().set_attribute(attribute, value)


async def operation_timer(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """A server middleware, innermost: the session's fingerprint on the MCP SDK's span, and each request's
    `mcp.server.operation.duration`; nothing at all while no OpenTelemetry SDK is installed."""
    if not (tracing() or measuring()):
        return await call_next(ctx)
    session_id = sdk_internals.connection_of(ctx).session_id
    if session_id is not None:
        trace.get_current_span().set_attribute("mcp.session.id", session_fingerprint(session_id) or "")
    attributes: dict[str, str] = {"mcp.method.name": ctx.method}
    if ctx.protocol_version is not None:
        attributes["mcp.protocol.version"] = ctx.protocol_version
    name = ctx.params.get("name") if ctx.params else None
    if ctx.method == "tools/call" and isinstance(name, str):
        attributes["gen_ai.tool.name"] = name
    started = time.perf_counter()
    try:
        result = await call_next(ctx)
    except BaseException as exc:
        attributes["error.type"] = type(exc).__qualname__
        raise
    finally:
        OPERATION_DURATION.record(time.perf_counter() - started, attributes)
    return result


def session_ended(opened: float) -> None:
    """A session opened (or taken over) here at `opened` (monotonic) ended here, or left."""
    SESSION_DURATION.record(time.monotonic() - opened)
