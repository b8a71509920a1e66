"""nginx's per-client bounds (nginx/run-nginx.sh): a client address past its requests per second or its
open requests (GET streams among them) gets 429 with a JSON-RPC error at once, while another address
goes on being served; a session holds one GET stream at most. Real nginx and uvicorn instances, with
the bounds set low enough to reach."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from loadtest.harness.stack import NGINX_COMMAND, Stack, free_port, nginx_bodies_env, nginx_site_env
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


@contextlib.contextmanager
def nginx_with(tmp_path_factory, name: str, **bounds: str) -> Iterator[Stack]:
    """A stack whose nginx has these settings (nginx/run-nginx.sh), low enough for a test to reach."""
    run_dir = tmp_path_factory.mktemp(name)
    with Stack(run_dir=run_dir, preset="stateful-sse", policy="session", port=free_port(), nginx_env=bounds) as stack:
        yield stack


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    with nginx_with(tmp_path_factory, "limited", NGINX_REQUESTS_PER_CLIENT="5", NGINX_CONNECTIONS_PER_CLIENT="2") as s:
        yield s


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


@pytest.fixture(scope="module")
def uploads_limited(tmp_path_factory):
    with nginx_with(tmp_path_factory, "uploads", NGINX_UPLOADS_PER_CLIENT="3", NGINX_UPLOADS="5") as stack:
        yield stack


def start_upload(
    stack: Stack, source: str, sent: int = 100_000, length: int = 4_000_000, method: str = "POST"
) -> http.client.HTTPConnection:
    """A slow upload from `source`: a body of `length` bytes declared, `sent` of them sent, the rest held back."""
    connection = connect(stack, source)
    connection.putrequest(method, "/mcp")
    for name, value in {**HEADERS, "Content-Length": str(length)}.items():
        connection.putheader(name, value)
    connection.endheaders()
    connection.send(b" " * sent)
    return connection


def upload_status(stack: Stack, source: str, method: str = "POST") -> int:
    """The status of an upload that nginx answers before its body is whole (429), else 0 within a second."""
    connection = start_upload(stack, source, method=method)
    connection.sock.settimeout(1)
    try:
        return connection.getresponse().status
    except TimeoutError:
        return 0
    finally:
        connection.close()


def body_bytes_on_disk(stack: Stack) -> int:
    """The bytes of the body files nginx's processes hold open (nginx unlinks each as it creates it)."""
    folder = nginx_bodies_env(stack.port).get("NGINX_BODY_DIR") or str(stack.run_dir / "nginx" / "client_body_temp")
    total = 0
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith(folder + "/"):
                total += fd.stat().st_size
    return total


def test_slow_uploads_wait_on_disk_and_a_client_past_its_uploads_gets_429(uploads_limited):
    stack = uploads_limited
    with contextlib.ExitStack() as uploads:
        for _ in range(3):
            uploads.callback(start_upload(stack, "127.0.0.8").close)
        # Past the first 16 KiB, each body waits in a file: nginx holds 16 KiB of it in memory, not 4 MiB.
        wait_for(lambda: body_bytes_on_disk(stack) >= 3 * (100_000 - 16_384), timeout=10, interval=0.1)
        assert upload_status(stack, "127.0.0.8") == 429  # a fourth upload of that address: refused at once
        assert upload_status(stack, "127.0.0.8", method="PUT") == 429  # a body is an upload whatever the method
        assert 'limiting connections by zone "per_client_uploads"' in stack.log_tail("nginx", 200)
        assert initialize(stack, "127.0.0.8")[0] == 200  # a small request of that address is no upload
        assert upload_status(stack, "127.0.0.9") == 0  # another address's upload is taken (it waits for its body)
        # Five uploads in all (NGINX_UPLOADS): a sixth, from an address of its own, is refused too.
        for _ in range(2):
            uploads.callback(start_upload(stack, "127.0.0.10").close)
        wait_for(lambda: upload_status(stack, "127.0.0.11") == 429, timeout=10, interval=0.3)
    wait_for(lambda: body_bytes_on_disk(stack) == 0, timeout=10, interval=0.1)  # an abandoned body leaves no file
    assert upload_status(stack, "127.0.0.8") == 0


@pytest.fixture(scope="module")
def behind_a_proxy(tmp_path_factory):
    """nginx behind a proxy at 127.0.0.1 (an Ingress, say), with a request rate low enough to reach."""
    proxies = "127.0.0.1 127.0.0.64/26"
    with nginx_with(tmp_path_factory, "proxied", NGINX_REQUESTS_PER_CLIENT="5", NGINX_TRUSTED_PROXIES=proxies) as stack:
        yield stack


def initialize_as(stack: Stack, source: str, forwarded_for: str) -> int:
    connection = connect(stack, source)
    try:
        connection.request("POST", "/mcp", json.dumps(INITIALIZE), {**HEADERS, "X-Forwarded-For": forwarded_for})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_behind_a_trusted_proxy_each_client_counts_by_the_address_it_forwards(behind_a_proxy):
    stack = behind_a_proxy
    flood = [initialize_as(stack, "127.0.0.1", "198.51.100.1") for _ in range(20)]
    assert flood[0] == 200 and 429 in flood
    assert initialize_as(stack, "127.0.0.1", "198.51.100.2") == 200  # another client behind the same proxy
    assert initialize_as(stack, "127.0.0.70", "198.51.100.3") == 200  # a proxy in the trusted block
    # An address that is no proxy names whom it likes: it is counted as itself all the same.
    spoofed = [initialize_as(stack, "127.0.0.5", f"198.51.100.{10 + n}") for n in range(20)]
    assert 429 in spoofed
    assert initialize_as(stack, "127.0.0.5", "198.51.100.99") == 429


def test_a_trusted_proxies_value_that_is_no_address_stops_nginx_at_start(tmp_path):
    env = {**os.environ, **nginx_site_env(tmp_path, free_port(), {"app1": free_port()}, "round-robin")}
    done = subprocess.run(
        NGINX_COMMAND, env={**env, "NGINX_TRUSTED_PROXIES": "10.0.0.0/8; allow all"}, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "NGINX_TRUSTED_PROXIES=10.0.0.0/8; allow all is not valid" in done.stderr
