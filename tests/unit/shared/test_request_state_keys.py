"""The request-state key ring's rules, in-process: which key seals, which keys open."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from mcp.server.request_state import InvalidRequestState

from loadtest.harness.topology import PROJECT_ROOT
from mcp_cluster.shared.request_state_keys import KeyRingCodec, RingKey, decode, encode, ring_security

OLD = RingKey(os.urandom(32), 0.0)


def pending() -> RingKey:
    """A key that seals an hour from now (made per test: the suite may run long)."""
    return RingKey(os.urandom(32), time.time() + 3600)


def test_a_pending_key_opens_but_does_not_seal_yet():
    new = pending()
    ring = KeyRingCodec([new, OLD])
    assert ring.sealing_key() == OLD
    assert KeyRingCodec([OLD]).unseal(ring.seal(b"x")) == b"x"  # instances without new still open it
    early = KeyRingCodec([RingKey(new.secret, 0.0)]).seal(b"y")  # an instance whose clock is ahead
    assert ring.unseal(early) == b"y"


def test_once_due_the_new_key_seals_and_the_old_still_opens():
    new = pending()
    sealed_before = KeyRingCodec([OLD]).seal(b"before")
    ring = KeyRingCodec([OLD, RingKey(new.secret, time.time() - 1)])
    assert ring.sealing_key().secret == new.secret
    assert ring.unseal(sealed_before) == b"before"
    with pytest.raises(InvalidRequestState, match="unknown key"):
        KeyRingCodec([OLD]).unseal(ring.seal(b"after"))


def test_given_keys_seal_with_the_first_and_open_with_all():
    first, second = os.urandom(32), os.urandom(32)
    _, codec = ring_security([first, second])
    assert codec.sealing_key().secret == first
    assert codec.unseal(KeyRingCodec([RingKey(second, 0.0)]).seal(b"z")) == b"z"


def test_an_empty_ring_refuses_instead_of_sealing_with_nothing():
    with pytest.raises(InvalidRequestState, match="no key loaded yet"):
        KeyRingCodec().seal(b"x")


def test_a_ring_that_is_not_ours_is_refused_with_the_reason():
    new = pending()
    assert decode(encode([new, OLD])) == [new, OLD]
    for raw in ("{}", "[]", encode([RingKey(b"short", 0.0)]), encode([OLD, OLD])):
        with pytest.raises(ValueError, match="mcp:request-state-keys in Redis"):
            decode(raw)


def test_redis_time_decides_when_a_rotation_comes_due():
    new = pending()
    ring = KeyRingCodec([new, OLD])
    ring.clock_offset = 3601.0  # Redis's clock is an hour ahead of ours: new is due by Redis's clock
    assert ring.sealing_key() == new


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["show"], {}, "mcp-cluster request-state-keys: set MCP_REDIS_URL to the Redis the instances share"),
        (["rotate", "--activate-in", "5"], {"MCP_REDIS_URL": "redis://127.0.0.1:1/0"}, "at least 10 seconds"),
    ],
)
def test_the_rotation_command_refuses_bad_input_with_the_reason(args, env, message):
    base = {k: v for k, v in os.environ.items() if not k.startswith("MCP_")}
    result = subprocess.run(
        [sys.executable, "-m", "mcp_cluster", "request-state-keys", *args],
        cwd=PROJECT_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr
