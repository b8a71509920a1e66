"""A small synchronous MCP client (2026-07-28 streamable HTTP) over any `requests.Session`.

The sibling of `McpClient`, with the same `request`/`call_tool` signatures, so the capability
operations take either. 2026-07-28 has no handshake and no session: every request is one POST
that carries the protocol version, client capabilities and client info in `params._meta`.
Sampling and elicitation arrive as an `input_required` result; the client answers its
`inputRequests` and sends the same call again (a new JSON-RPC id) with `inputResponses` and the
echoed `requestState`, a round that any instance behind the balancer may serve.
"""

from __future__ import annotations

import base64
import itertools
import re
import time
from typing import Any

import requests

from loadtest.client.legacy import ACCEPT_BOTH, Answer, Exchange, raise_for_transport, stream_messages

MODERN_VERSION = "2026-07-28"
MAX_ROUNDS = 10  # input-required rounds before giving up, as the SDK's client (input_required_max_rounds)
STATE_ONLY_DELAY = 0.05  # a round that carries only requestState: wait a little before sending it back
CLIENT_INFO = {"name": "mcp-scale-lab-loadtest", "version": "1"}
NAME_PARAMS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}  # mirrored in Mcp-Name
_HEADER_SAFE = re.compile(r"^[\x20-\x7E]*$")


class ModernClient:
    """One 2026-07-28 client: no session, monotonically increasing request ids, logs opted in."""

    session_id: str | None = None  # never one: 2026-07-28 has no sessions
    protocol_version = MODERN_VERSION

    def __init__(
        self,
        http: requests.Session,
        url: str,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        log_level: str | None = "info",
        capabilities: dict | None = None,
    ) -> None:
        self.http = http
        self.url = url
        self.timeout = timeout
        self.log_level = log_level  # None: no log notifications (2026-07-28 logging is opt-in per request)
        self.capabilities = capabilities if capabilities is not None else {"sampling": {}, "elicitation": {}}
        self._ids = itertools.count(1)
        self._progress_tokens = itertools.count(1)

    def meta(self) -> dict[str, Any]:
        """What every request's `params._meta` carries in place of a handshake."""
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": self.capabilities,
            "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        }
        if self.log_level is not None:
            meta["io.modelcontextprotocol/logLevel"] = self.log_level
        return meta

    def headers(self, method: str, params: dict) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": ACCEPT_BOTH,
            "MCP-Protocol-Version": MODERN_VERSION,
            "Mcp-Method": method,
        }
        name = params.get(NAME_PARAMS.get(method, ""))
        if isinstance(name, str):
            headers["Mcp-Name"] = header_value(name)
        return headers

    def request(
        self, method: str, params: dict | None = None, *, answer: Answer | None = None, progress: bool = False
    ) -> Exchange:
        """Send one request and read its response; with `answer`, answer input-required rounds until a
        final result. The exchange is the last round's; `answered` and `round_instances` cover all rounds."""
        params = dict(params or {})
        params["_meta"] = {**params.get("_meta", {}), **self.meta()}
        if progress:  # one token for every round: only the final one runs the work
            params["_meta"]["progressToken"] = f"p{next(self._progress_tokens)}"
        answered: list[dict] = []
        instances: list[str | None] = []
        for round_number in range(1, MAX_ROUNDS + 2):
            exchange = self._send(method, params)
            instances.append(exchange.instance)
            result = exchange.result
            if answer is None or result is None or result.get("resultType") != "input_required":
                break
            if round_number > MAX_ROUNDS:
                exchange.incomplete = f"still input required after {MAX_ROUNDS} rounds"
                break
            params = self._next_round(params, result, answer, answered)
        exchange.answered = answered
        exchange.round_instances = instances
        return exchange

    def call_tool(self, name: str, arguments: dict | None = None, **kwargs: Any) -> Exchange:
        return self.request("tools/call", {"name": name, "arguments": arguments or {}}, **kwargs)

    def listen(self, uris: list[str], read_timeout: float) -> requests.Response:
        """Open a `subscriptions/listen` stream for `uris` (the caller reads it with `stream_events` and
        closes it): first `notifications/subscriptions/acknowledged`, then `notifications/resources/updated`."""
        params = {"notifications": {"resourceSubscriptions": list(uris)}, "_meta": self.meta()}
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": "subscriptions/listen", "params": params}
        headers = self.headers("subscriptions/listen", params)
        timeout = (self.timeout[0], read_timeout)
        return raise_for_transport(self.http.post(self.url, json=body, headers=headers, stream=True, timeout=timeout))

    def close(self) -> None:
        """Nothing to end: there is no session."""

    def _send(self, method: str, params: dict) -> Exchange:
        request_id = next(self._ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        # No `with`: Locust's HttpSession allows it only together with catch_response.
        resp = raise_for_transport(
            self.http.post(self.url, json=body, headers=self.headers(method, params), stream=True, timeout=self.timeout)
        )
        try:
            exchange = Exchange(resp.status_code, resp.headers, request_id=request_id)
            for message in stream_messages(resp):
                exchange.messages.append(message)
                if "method" not in message and message.get("id") == request_id:
                    break
        finally:
            resp.close()
        return exchange

    @staticmethod
    def _next_round(params: dict, result: dict, answer: Answer, answered: list[dict]) -> dict:
        """The same call again, carrying the answers to `result`'s input requests and its request state."""
        responses = {}
        for key, input_request in (result.get("inputRequests") or {}).items():
            server_request = {"method": input_request.get("method"), "params": input_request.get("params", {})}
            answered.append(server_request)
            responses[key] = answer(server_request)
        retry = {k: v for k, v in params.items() if k not in ("inputResponses", "requestState")}
        if responses:
            retry["inputResponses"] = responses
        else:
            time.sleep(STATE_ONLY_DELAY)  # the server asked for nothing but a retry (gevent-friendly once patched)
        if "requestState" in result:
            retry["requestState"] = result["requestState"]  # opaque: echoed byte for byte
        return retry


def header_value(value: str) -> str:
    """A value as an HTTP header carries it: verbatim when printable ASCII, else the SDK's base64 sentinel."""
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not value.startswith("=?base64?"):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="
