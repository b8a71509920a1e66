"""A small synchronous MCP client (2025-11-25 streamable HTTP) over any `requests.Session`.

Locust's `HttpSession` is a `requests.Session`, so the load tests and the pytest
suite drive the server through the same code. It speaks the wire protocol
directly: the SDK's own client is asyncio-based and cannot run concurrently
inside gevent greenlets. Its 2026-07-28 sibling is `ModernClient` (modern_client.py), which
returns the same `Exchange`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

LEGACY_VERSION = "2025-11-25"
INSTANCE_HEADER = "X-Mcp-Instance"
SESSION_HEADER = "Mcp-Session-Id"
ACCEPT_BOTH = "application/json, text/event-stream"

Answer = Callable[[dict], dict]
"""Given a server request (sampling/createMessage, elicitation/create, ...), return its JSON-RPC result."""


@dataclass
class Exchange:
    """One HTTP exchange: its status, the instance that answered, and every JSON-RPC message it carried."""

    status: int
    headers: Any
    messages: list[dict] = field(default_factory=list)
    request_id: int | None = None
    answered: list[dict] = field(default_factory=list)  # server requests answered mid-call (or between rounds)
    rejected_answer: Exchange | None = None  # the server refused one of our answers; reading stopped there
    round_instances: list[str | None] = field(default_factory=list)  # 2026-07-28: who answered each round
    incomplete: str | None = None  # why the client gave up before a final result (2026-07-28 rounds)

    @property
    def instance(self) -> str | None:
        return self.headers.get(INSTANCE_HEADER)

    @property
    def response(self) -> dict | None:
        """The JSON-RPC response to our request (or an id-less error, as the SDK sends for 404/400)."""
        for message in self.messages:
            if "method" not in message and message.get("id") in (self.request_id, None):
                return message
        return None

    @property
    def result(self) -> dict | None:
        return (self.response or {}).get("result")

    @property
    def error(self) -> dict | None:
        return (self.response or {}).get("error")

    def notifications(self, method: str) -> list[dict]:
        return [m.get("params", {}) for m in self.messages if m.get("method") == method and "id" not in m]


class McpClient:
    """One MCP client: a session id (on stateful servers) and monotonically increasing request ids."""

    def __init__(
        self, http: requests.Session, url: str, *, timeout: tuple[float, float] = (5.0, 30.0), first_id: int = 1
    ) -> None:
        self.http = http
        self.url = url
        self.timeout = timeout
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._ids = itertools.count(first_id)  # a second client of one session starts past the first's ids

    def next_id(self) -> int:
        """A request id this client has not used (in its session, an id is used once: a repeat is a retry)."""
        return next(self._ids)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH}
        if self.session_id:
            headers[SESSION_HEADER] = self.session_id
        if self.protocol_version:
            headers["MCP-Protocol-Version"] = self.protocol_version
        return {**headers, **(extra or {})}

    def initialize(self, capabilities: dict | None = None, *, send_initialized: bool = True) -> Exchange:
        """Open a session: initialize, keep the session id and version, then notifications/initialized."""
        params = {
            "protocolVersion": LEGACY_VERSION,
            "capabilities": capabilities if capabilities is not None else {"sampling": {}, "elicitation": {}},
            "clientInfo": {"name": "mcp-scale-lab-loadtest", "version": "1"},
        }
        exchange = self.request("initialize", params)
        if exchange.result is not None:
            self.session_id = exchange.headers.get(SESSION_HEADER)
            self.protocol_version = exchange.result.get("protocolVersion", LEGACY_VERSION)
            if send_initialized:
                self.notify("notifications/initialized")
        return exchange

    def request(
        self,
        method: str,
        params: dict | None = None,
        *,
        answer: Answer | None = None,
        progress: bool = False,
        request_id: int | None = None,
    ) -> Exchange:
        """Send one request and read its response, answering server requests that arrive on its stream.
        `request_id`: that of an earlier request, to send it again (a retry); default, the next id."""
        request_id = self.next_id() if request_id is None else request_id
        params = dict(params or {})
        if progress:
            params["_meta"] = {**params.get("_meta", {}), "progressToken": f"p{request_id}"}
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        # No `with`: Locust's HttpSession allows it only together with catch_response.
        resp = raise_for_transport(
            self.http.post(self.url, json=body, headers=self.headers(), stream=True, timeout=self.timeout)
        )
        try:
            exchange = Exchange(resp.status_code, resp.headers, request_id=request_id)
            for message in stream_messages(resp):
                exchange.messages.append(message)
                if "method" in message and "id" in message and answer is not None:
                    exchange.answered.append(message)
                    acknowledged = self.respond(message["id"], answer(message))
                    if acknowledged.status != 202:  # the call can never finish: stop waiting for it
                        exchange.rejected_answer = acknowledged
                        break
                if "method" not in message and message.get("id") == request_id:
                    break
        finally:
            resp.close()
        return exchange

    def call_tool(self, name: str, arguments: dict | None = None, **kwargs: Any) -> Exchange:
        return self.request("tools/call", {"name": name, "arguments": arguments or {}}, **kwargs)

    def notify(self, method: str, params: dict | None = None) -> Exchange:
        body = {"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})}
        return self._post(body)

    def respond(self, server_request_id: int | str, result: dict) -> Exchange:
        """Answer a server request; the SDK acknowledges with 202."""
        return self._post({"jsonrpc": "2.0", "id": server_request_id, "result": result})

    def open_stream(self, read_timeout: float | None = None, last_event_id: str | None = None) -> requests.Response:
        """The standalone GET stream (the caller reads it with `stream_events` and closes it);
        `last_event_id` asks the server to replay what came after that event."""
        extra = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        headers = {k: v for k, v in self.headers(extra).items() if k != "Content-Type"}
        timeout = (self.timeout[0], read_timeout or self.timeout[1])
        return raise_for_transport(self.http.get(self.url, headers=headers, stream=True, timeout=timeout))

    def close(self) -> Exchange:
        """End the session with DELETE."""
        resp = raise_for_transport(self.http.delete(self.url, headers=self.headers(), timeout=self.timeout))
        return Exchange(resp.status_code, resp.headers, _parse_json(resp.content))

    def _post(self, body: dict) -> Exchange:
        resp = raise_for_transport(self.http.post(self.url, json=body, headers=self.headers(), timeout=self.timeout))
        return Exchange(resp.status_code, resp.headers, _parse_json(resp.content))


def stream_messages(resp: requests.Response) -> Iterator[dict]:
    """The JSON-RPC messages of a response, as they arrive (SSE events or one JSON body)."""
    for _, message in stream_events(resp):
        yield message


def stream_events(resp: requests.Response, primes: bool = False) -> Iterator[tuple[str | None, dict]]:
    """(SSE event id or None, message) for each JSON-RPC message of a response, as they arrive; with `primes`,
    (event id, {}) for an event with an id and no data too (a priming event: where a resume may begin)."""
    content_type = resp.headers.get("Content-Type", "")
    if content_type.startswith("text/event-stream"):
        yield from _sse_events(resp, primes)
    else:
        for message in _parse_json(resp.content):
            yield None, message


def raise_for_transport(resp: requests.Response) -> requests.Response:
    """Raise what requests would have raised: Locust's HttpSession returns connection errors and
    timeouts as a response with status 0 and the exception in `.error` instead."""
    error = getattr(resp, "error", None)
    if resp.status_code == 0 and isinstance(error, Exception):
        raise error
    return resp


def _sse_events(resp: requests.Response, primes: bool) -> Iterator[tuple[str | None, dict]]:
    """Parse SSE by hand: requests' iter_lines splits on U+2028 and on CRLF halves across chunks."""
    buffer = b""
    data: list[bytes] = []
    event_id = None
    for chunk in resp.iter_content(chunk_size=None):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                messages = _parse_json(b"\n".join(data))
                if not messages and primes and event_id is not None:
                    yield event_id, {}
                for message in messages:
                    yield event_id, message
                data, event_id = [], None
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
            elif line.startswith(b"id:"):
                event_id = line[3:].strip().decode("latin-1")
            # event:, retry: and ": ping" comments carry nothing we need


def _parse_json(raw: bytes) -> list[dict]:
    if not raw.strip():
        return []
    try:
        parsed = json.loads(raw)
    except ValueError:
        return [{"unparsed": raw.decode("utf-8", "replace")}]
    return parsed if isinstance(parsed, list) else [parsed]
