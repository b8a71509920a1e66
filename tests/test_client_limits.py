"""nginx's per-client bounds (nginx/run-nginx.sh): a client address past its requests per second or its
open connections gets 429 with a JSON-RPC error at once, while another address goes on being served.
Real nginx and uvicorn instances, with the bounds set low enough to reach."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
from urllib.parse import urlsplit

import pytest

from loadtest.stack import Stack, free_port
from tests.utils.clients import wait_for

CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def post(stack: Stack, body: dict, source: str = "127.0.0.1") -> tuple[int, dict]:
    """One POST to nginx from the client address `source` (all of 127/8 is this host's)."""
    parts = urlsplit(stack.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30, source_address=(source, 0))
    try:
        connection.request("POST", parts.path, json.dumps(body), HEADERS)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    bounds = {"NGINX_REQUESTS_PER_CLIENT": "5", "NGINX_CONNECTIONS_PER_CLIENT": "2"}
    run_dir = tmp_path_factory.mktemp("limited")
    with Stack(run_dir=run_dir, preset="stateless-json", port=free_port(), nginx_env=bounds) as stack:
        yield stack


def test_a_client_past_its_request_rate_gets_429_and_others_are_served(limited):
    statuses = [post(limited, CALL) for _ in range(20)]  # far faster than 5 a second, past the burst of 5
    refused = [answer for status, answer in statuses if status == 429]
    assert refused and statuses[0][0] == 200
    assert refused[0]["error"]["message"].startswith("Too many requests or connections from this client")
    assert "limiting requests" in limited.log_tail("nginx", 200)
    assert post(limited, CALL, source="127.0.0.2")[0] == 200


def test_a_client_past_its_open_connections_gets_429_and_others_are_served(limited):
    slow = {**CALL, "params": {"name": "slow_task", "arguments": {"steps": 40, "step_seconds": 0.25}}}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = [pool.submit(post, limited, slow, "127.0.0.3") for _ in range(2)]
        # Refused once both are in nginx (for 10 s); asked 3 times a second, under the rate bound.
        wait_for(lambda: post(limited, CALL, source="127.0.0.3")[0] == 429, timeout=8, interval=0.3)
        assert "limiting connections by zone" in limited.log_tail("nginx", 200)
        assert post(limited, CALL, source="127.0.0.4")[0] == 200
        assert [future.result()[0] for future in held] == [200, 200]
