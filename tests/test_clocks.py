"""An instance's wall clock jumping, as an NTP step makes it (libfaketime; loadtest/clock.py): real redis-server,
uvicorn and nginx. What clocks do to sessions, takeovers and hops: docs/design/redis-sessions.md#clocks."""

from __future__ import annotations

import requests

from app.shared import keys
from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.clock import FakeClock
from loadtest.stack import Stack, free_port
from tests.utils.clients import session, wait_for

JUMP_SECONDS = 30  # past the hops' window (10 s) and every heartbeat's expiry (2 s)


def generations(stack: Stack) -> list[int]:
    """Each session's generation in Redis: 1, and one more for each takeover."""
    with stack.redis_client("redis") as admin:
        records = [name for name in admin.scan_iter(match=keys.SESSION.format("*"))]
        return sorted(int(admin.hget(name, "gen")) for name in records)


def test_a_hop_between_instances_whose_clocks_disagree_is_refused_saying_so(tmp_path):
    clock = FakeClock(tmp_path / "app2-clock")
    options = {"preset": "stateful-sse", "store": "redis", "port": free_port(), "process_env": {"app2": clock.env()}}
    with Stack(run_dir=tmp_path / "stack", **options) as stack:
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
        assert generations(stack) == [1]  # its leases and heartbeats run on its monotonic clock: no takeover


def _refused(client: McpClient):
    exchange = client.call_tool("whoami")
    return exchange if exchange.status == 503 else None
