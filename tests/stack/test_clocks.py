"""A process's wall clock jumping, an instance's or Redis's, as an NTP step makes it (libfaketime;
loadtest/harness/clock.py): real redis-server, uvicorn and nginx. What clocks do to sessions, takeovers and hops:
docs/design/redis-sessions.md#clocks."""

from __future__ import annotations

import time

import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.experiments.faults.scorecard import generations
from loadtest.harness.stack import Stack, free_port
from tests.utils.clients import session, wait_for

JUMP_SECONDS = 30  # past the hops' window (10 s) and every heartbeat's expiry (2 s)


def test_a_hop_between_instances_whose_clocks_disagree_is_refused_saying_so(tmp_path):
    options = {"preset": "stateful-sse", "store": "redis", "port": free_port(), "clocks": ("app2",)}
    with Stack(run_dir=tmp_path / "stack", **options) as stack:
        clock = stack.clock("app2")
        client = session(stack.instance_url("app1"))
        relayed = McpClient(requests.Session(), stack.instance_url("app2"))
        relayed.session_id, relayed.protocol_version = client.session_id, client.protocol_version
        assert cap.counter(relayed, expected=1).failure is None  # app2 relays to app1
        clock.jump(JUMP_SECONDS)
        refused = wait_for(lambda: _refused(relayed), timeout=5)  # once app2 reads its clock again (1 s)
        assert refused.status == 503
        message = refused.error["message"]
        assert message.startswith("this hop was signed 30 s after this instance's clock says"), message
        assert "the instances' clocks disagree" in message and message.endswith("did not run: retry")
        clock.jump(-JUMP_SECONDS)
        wait_for(lambda: cap.counter(relayed, expected=2).failure is None, timeout=5)
        assert cap.counter(client, expected=3).failure is None  # refused hops ran nothing
        assert list(generations(stack).values()) == [
            1
        ]  # its leases and heartbeats run on its monotonic clock: no takeover


def _redis_clock_offset(stack: Stack) -> int:
    with stack.redis_client("redis") as admin:
        return round(admin.time()[0] - time.time())


def _refused(client: McpClient):
    exchange = client.call_tool("whoami")
    return exchange if exchange.status == 503 else None


def test_redis_s_clock_jumping_ahead_and_back_takes_no_session_from_its_live_owner(tmp_path):
    """Redis's wall clock jumps 30 s ahead and back, then behind and back, under the counting load (24 careful
    clients, round-robin). Ahead, every owner's heartbeat key expires at once; an instance takes a session over
    only once its owner's heartbeat stayed missing for 2 s by its own clock (`SessionRegistry.silent`), and the
    owners beat again within 0.5 s: no session changes owner, and nothing is lost, doubled or failed."""
    from loadtest.experiments.faults.load import CountingLoad

    options = {"preset": "stateful-sse", "policy": "round-robin", "store": "redis", "clocks": ("redis",)}
    stack = Stack(run_dir=tmp_path / "stack", port=free_port(), **options)
    with stack, CountingLoad(stack.url, 24) as load:
        load.go_on(5)
        before = generations(stack)
        for step in (JUMP_SECONDS, -JUMP_SECONDS, -JUMP_SECONDS, JUMP_SECONDS):  # ahead and back, behind and back
            stack.clock("redis").jump(step)
            wait_for(lambda: _redis_clock_offset(stack) == stack.clock("redis").offset, timeout=5)
            load.go_on(3, timeout=60)
        after = generations(stack)
    tally = load.tally
    losses = (tally.failed, tally.sessions_lost, tally.acknowledged_lost, tally.doubled, tally.crossed)
    assert losses == ({}, 0, 0, 0, 0), tally
    assert after == before  # every session's generation: no takeover
