"""Reading and answering raw ASGI HTTP exchanges: headers, bodies, JSON-RPC errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from starlette.types import Message, Receive, Send

from mcp_cluster.shared.runs import NOT_RUN

SESSION_ID_HEADER = b"mcp-session-id"
PROTOCOL_VERSION_HEADER = b"mcp-protocol-version"
LAST_EVENT_ID_HEADER = b"last-event-id"  # a GET stream resumed after this event
SERVED_BY_HEADER = b"x-mcp-served-by"  # on a relayed answer: the owner's X-Mcp-Instance (ours stays nginx's pick)
FORWARD_HEADER = "x-mcp-forwarded"  # a hop between instances, signed (mcp_cluster/cluster/forwarding.py)
MAX_BODY_BYTES = 4 * 1024 * 1024  # the SDK's own limit: read_body's for a whole request
HANDED_OVER_HEADER = b"x-mcp-handed-over"  # on a 503 from an instance: it ran nothing, and says why
MOVED, DRAINING = b"moved", b"draining"  # the session is elsewhere now: look again; or it is stopping: try another
REPLACED = b"replaced"  # the process the hop was signed for is gone (another took its address): it is dead
LOST_REDIS = b"lost-redis"  # the owner cannot reach Redis: it serves again once it can, or its beat expires


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of header `name` (lower case) in ASGI `headers`, or None."""
    for key, value in headers:  # a loop, not next() over a generator: every request looks up several
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class Refused(Exception):
    """A request the layer answers itself: HTTP status and JSON-RPC error."""

    def __init__(self, status: int, code: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers


class ClientGone(ConnectionError):
    """The client disconnected before its request body arrived whole."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; Refused (413) past `limit` bytes, ClientGone if the client left."""
    chunks, size = [], 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone("the client disconnected before sending its whole request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, -32600, f"request body larger than {limit} bytes; {NOT_RUN}")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the already-read body, then whatever the client sends next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


NOT_JSON = object()  # what `parse_json` returns for a body that is not JSON


def parse_json(body: bytes) -> object:
    """A request body as JSON, or NOT_JSON: malformed, or nested too deeply for Python's parser (which
    raises RecursionError, not ValueError, and the SDK answers such a body 400 -32700 itself)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return NOT_JSON


def json_rpc_error(code: int, message: str, request_id: object = None) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}).encode()


def sse_event(message: bytes) -> bytes:
    """One JSON-RPC message as the SDK frames it on an SSE stream."""
    return b"event: message\r\ndata: " + message + b"\r\n\r\n"


def request_id_of(body: bytes) -> object:
    """The JSON-RPC id of a request body, or None (a batch, a notification, not JSON)."""
    message = parse_json(body)
    return message.get("id") if isinstance(message, dict) else None


async def send_response(
    send: Send,
    status: int,
    body: bytes = b"",
    content_type: bytes | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    start = [(b"content-length", str(len(body)).encode()), *headers]
    if content_type is not None:
        start.insert(0, (b"content-type", content_type))
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, status: int, code: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send_response(send, status, json_rpc_error(code, message), b"application/json", headers)
