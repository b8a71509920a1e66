"""nginx's per-client bounds (nginx/run-nginx.sh): a client address past its requests per second or its
open requests (GET streams among them) gets 429 with a JSON-RPC error at once, while another address
goes on being served; a session holds one GET stream at most. Real nginx and uvicorn instances, with
the bounds set low enough to reach."""

from __future__ import annotations

import contextlib
import http.client
import json
from urllib.parse import urlsplit

import pytest

from loadtest.stack import Stack, free_port
from tests.utils.clients import wait_for

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "limits", "version": "1"}},
}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def connect(stack: Stack, source: str) -> http.client.HTTPConnection:
    """A connection to nginx from the client address `source` (all of 127/8 is this host's)."""
    parts = urlsplit(stack.url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(source, 0))


def initialize(stack: Stack, source: str = "127.0.0.1") -> tuple[int, str | None, dict]:
    """Open a session from `source`: the status, the session id and, refused, the JSON-RPC error."""
    connection = connect(stack, source)
    try:
        connection.request("POST", "/mcp", json.dumps(INITIALIZE), HEADERS)
        response = connection.getresponse()
        body = response.read()
        return response.status, response.getheader("Mcp-Session-Id"), json.loads(body) if response.status == 429 else {}
    finally:
        connection.close()


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    bounds = {"NGINX_REQUESTS_PER_CLIENT": "5", "NGINX_CONNECTIONS_PER_CLIENT": "2"}
    run_dir = tmp_path_factory.mktemp("limited")
    with Stack(run_dir=run_dir, preset="stateful-sse", policy="session", port=free_port(), nginx_env=bounds) as stack:
        yield stack


def test_a_client_past_its_request_rate_gets_429_and_others_are_served(limited):
    answers = [initialize(limited) for _ in range(20)]  # far faster than 5 a second, past the burst of 5
    refused = [error for status, _, error in answers if status == 429]
    assert refused and answers[0][0] == 200
    assert refused[0]["error"]["message"].startswith("Too many requests or connections from this client")
    assert "limiting requests" in limited.log_tail("nginx", 200)
    assert initialize(limited, source="127.0.0.2")[0] == 200


def test_a_client_past_its_open_streams_gets_429_and_others_are_served(limited):
    with contextlib.ExitStack() as streams:
        for _ in range(2):  # two GET streams from one address, each open once its headers are in
            status, session_id, _ = initialize(limited, "127.0.0.3")
            assert status == 200
            stream = streams.enter_context(contextlib.closing(connect(limited, "127.0.0.3")))
            stream.request("GET", "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": session_id})
            assert stream.getresponse().status == 200
            second = connect(limited, "127.0.0.5")  # one GET stream per session: the SDK's own bound
            second.request("GET", "/mcp", headers={"Accept": "text/event-stream", "Mcp-Session-Id": session_id})
            assert second.getresponse().status == 409
            second.close()
        assert initialize(limited, "127.0.0.3")[0] == 429  # a third request of that address, while both stay open
        assert "limiting connections by zone" in limited.log_tail("nginx", 200)
        assert initialize(limited, "127.0.0.4")[0] == 200
    # The streams closed: room again, once nginx has seen them go (asked under the rate bound).
    wait_for(lambda: initialize(limited, "127.0.0.3")[0] == 200, timeout=10, interval=0.3)


def test_the_protected_resource_metadata_is_held_to_the_same_bounds(limited):
    """An instance answers it, so a flood of it is refused at nginx like one of /mcp (404 here: auth is off)."""

    def metadata(source: str) -> int:
        connection = connect(limited, source)
        try:
            connection.request("GET", "/.well-known/oauth-protected-resource/mcp")
            return connection.getresponse().status
        finally:
            connection.close()

    statuses = [metadata("127.0.0.6") for _ in range(20)]
    assert statuses[0] != 429 and 429 in statuses, statuses
    assert metadata("127.0.0.7") != 429
