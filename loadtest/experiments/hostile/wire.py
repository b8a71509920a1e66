"""Raw HTTP to nginx from a chosen client address, and what came back: the status and the JSON-RPC error
(or tool error) a person would read."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from loadtest.client.legacy import ACCEPT_BOTH, LEGACY_VERSION
from loadtest.client.modern import MODERN_VERSION

HANG_SECONDS = 20.0  # no answer within this is a hang


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer (the connection closed, or nothing came in HANG_SECONDS)
    error: str  # "code: message" of the JSON-RPC error, the tool's error text, or what happened instead
    seconds: float
    session_id: str | None = None
    body: object = None  # the JSON-RPC message, when there was one

    @property
    def hung(self) -> bool:
        return self.status is None and self.error.startswith("no answer")


class Wire:
    """Requests to one nginx, each on a connection of its own, from `source` (all of 127/8 is this host)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port or 80, parts.path

    def connect(self, source: str = "127.0.0.1", timeout: float = HANG_SECONDS) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout, source_address=(source, 0))

    def send(
        self,
        body: bytes | dict | list | None,
        headers: dict[str, str],
        *,
        method: str = "POST",
        source: str = "127.0.0.1",
        path: str | None = None,
    ) -> Answer:
        payload = json.dumps(body).encode() if isinstance(body, dict | list) else body
        started = time.monotonic()
        connection = self.connect(source)
        try:
            connection.request(method, path or self.path, body=payload, headers=headers)
            response = connection.getresponse()
            return read(response, started)
        except TimeoutError:
            return Answer(None, f"no answer within {HANG_SECONDS:.0f} s", time.monotonic() - started)
        except (ConnectionError, http.client.HTTPException) as exc:
            return Answer(None, f"connection closed ({exc.__class__.__name__})", time.monotonic() - started)
        finally:
            connection.close()


def read(response: http.client.HTTPResponse, started: float) -> Answer:
    """The first JSON-RPC message of a JSON or SSE body (an SSE stream is read up to its first message)."""
    session_id = response.getheader("mcp-session-id")
    if "text/event-stream" in (response.getheader("content-type") or ""):
        message = _first_event(response)
    else:
        raw = response.read()
        try:
            message = json.loads(raw) if raw else None
        except ValueError:
            message = raw.decode(errors="replace").strip()[:80] or None
    return Answer(response.status, describe(message), time.monotonic() - started, session_id, message)


def _first_event(response: http.client.HTTPResponse) -> object:
    for line in response:
        if line.startswith(b"data:") and line[5:].strip():
            return json.loads(line[5:])
    return None


def describe(message: object) -> str:
    """What a person reads in the answer: the JSON-RPC error, a tool's error, or that the call succeeded."""
    if not isinstance(message, dict):
        return f"not JSON-RPC: {message!r}" if message else "no body"
    if isinstance(message.get("error"), dict):
        return f"{message['error'].get('code')}: {message['error'].get('message')}"
    result = message.get("result")
    if isinstance(result, dict) and result.get("isError"):
        return "tool error: " + " ".join(c.get("text", "") for c in result.get("content", []))
    return "ok"


def headers(token: str | None = None, session_id: str | None = None, version: str | None = None, **extra: str):
    """The headers of an MCP POST: JSON in, JSON or SSE out, and the bearer token, session and version given."""
    found = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH}
    if token:
        found["Authorization"] = f"Bearer {token}"
    if session_id:
        found["Mcp-Session-Id"] = session_id
    if version:
        found["MCP-Protocol-Version"] = version
    return {**found, **extra}


def initialize_body(request_id: int = 0) -> dict:
    params = {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": {"name": "hostile", "version": "1"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}


def call_body(tool: str, arguments: dict, version: str | None = None, request_id: int = 1, **params) -> dict:
    """A tools/call; with `version` 2026-07-28, the per-request metadata that protocol carries."""
    body_params = {"name": tool, "arguments": arguments, **params}
    if version == MODERN_VERSION:
        capabilities = {"elicitation": {}, "sampling": {}}
        body_params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        }
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": body_params}
