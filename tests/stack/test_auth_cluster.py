"""Sessions bound to their principal on every instance: three real uvicorn instances sharing sessions through
a real redis-server, behind nginx, with authentication on. Another principal holding a session's id gets 404
from the owner, from an instance that would forward, and after the owner died and the session was taken
over; and its attempts neither run anything nor move the session."""

from __future__ import annotations

import signal

import pytest
import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import INSTANCES
from mcp_cluster.shared import keys
from tests.utils.clients import wait_for
from tests.utils.tokens import TestIssuer

NOT_FOUND = {"code": -32600, "message": "Session not found"}


@pytest.fixture(scope="module")
def issuer(tmp_path_factory) -> TestIssuer:
    return TestIssuer(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def stack(issuer, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("auth-stack")
    env = issuer.env()
    with Stack(run_dir=run_dir, preset="stateful-sse", store="redis", port=free_port(), app_env=env) as stack:
        yield stack


def client_of(url: str, issuer: TestIssuer, subject: str, session_id: str | None = None) -> McpClient:
    http = requests.Session()
    http.headers.update(issuer.bearer(subject))
    client = McpClient(http, url)
    client.session_id, client.protocol_version = session_id, "2025-11-25"
    return client


def owner_of(stack: Stack, session_id: str) -> str:
    return record(stack, session_id)[b"owner"].decode()


def record(stack: Stack, session_id: str) -> dict[bytes, bytes]:
    """The session's record in Redis (keyed by the id without the instance prefix nginx routes by)."""
    return stack.redis_client("redis").hgetall(keys.SESSION.format(session_id.partition(".")[2]))


def test_no_instance_serves_a_session_to_another_principal(stack, issuer):
    alice = client_of(stack.url, issuer, "alice")
    assert cap.open_session(alice).failure is None
    counts = [cap.counter(alice, expected=n) for n in (1, 2, 3)]
    assert [c.failure for c in counts] == [None] * 3
    assert {c.instance for c in counts} == set(INSTANCES)  # round-robin: owner and forwarders alike served alice
    owner = owner_of(stack, alice.session_id)
    for name in INSTANCES:  # the owner answers from its own table; the others refuse before forwarding
        bob = client_of(stack.instance_url(name), issuer, "bob", alice.session_id)
        refused = bob.call_tool("increment")
        assert (refused.status, refused.messages[0]["error"]) == (404, NOT_FOUND), name
    assert cap.counter(alice, expected=4).failure is None  # bob's three attempts ran nothing
    assert owner_of(stack, alice.session_id) == owner
    anonymous = requests.post(stack.url, json={}, headers={"mcp-session-id": alice.session_id}, timeout=5)
    assert anonymous.status_code == 401


def test_a_session_taken_over_stays_its_principals(stack, issuer):
    alice = client_of(stack.url, issuer, "alice")
    opened = cap.open_session(alice)
    assert opened.failure is None and cap.counter(alice, expected=1).failure is None
    dead_owner = owner_of(stack, alice.session_id)
    stack.restart(opened.instance, signal.SIGKILL)  # a crash: the session now lives only in Redis
    survivor = next(name for name in INSTANCES if name != opened.instance)
    bob = client_of(stack.instance_url(survivor), issuer, "bob", alice.session_id)
    refused = bob.call_tool("increment")
    assert (refused.status, refused.messages[0]["error"]) == (404, NOT_FOUND)
    assert owner_of(stack, alice.session_id) == dead_owner  # bob's request claimed nothing
    beat = keys.OWNER.format(dead_owner)  # until it lapses, a request is sent to the restarted process
    wait_for(lambda: not stack.redis_client("redis").exists(beat), timeout=10)
    alice.url = stack.instance_url(survivor)  # her client goes on (a request id is never used twice in a session)
    assert cap.counter(alice, expected=2).failure is None  # alice's request took it over
    assert owner_of(stack, alice.session_id) != dead_owner
    for name in INSTANCES:  # the new owner, from the session it rebuilt, and the others, from the record
        again = client_of(stack.instance_url(name), issuer, "bob", alice.session_id).call_tool("increment")
        assert (again.status, again.messages[0]["error"]) == (404, NOT_FOUND), name
    assert cap.counter(alice, expected=3).failure is None


def test_redis_keeps_a_hash_of_the_principal_not_the_principal(stack, issuer):
    alice = client_of(stack.url, issuer, "alice")
    assert cap.open_session(alice).failure is None
    kept = record(stack, alice.session_id)
    assert len(kept[b"principal"]) == 64 and b"alice" not in b"".join(kept.values())
