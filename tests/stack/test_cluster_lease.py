"""An owner's lease (mcp_cluster/cluster/lease.py): the arithmetic in-process, a claim refused while the owner's beat
lives on a real redis-server, and an owner cut off from Redis by a real TCP link (stopped, so its bytes go
unanswered) falling silent before another instance takes its session over."""

from __future__ import annotations

import concurrent.futures
import json
import time
from datetime import datetime
from pathlib import Path

import anyio
import pytest
import requests

from loadtest.client.legacy import McpClient, stream_messages
from loadtest.harness.stack import Stack, free_port, link_of
from mcp_cluster.cluster import lease as lease_module
from mcp_cluster.cluster.lease import MARGIN_SECONDS, OWNER_TIMEOUT_SECONDS, STOP_AFTER_SECONDS, Lease
from mcp_cluster.sessions.records import Opening
from mcp_cluster.shared.keys import OWNER
from mcp_cluster.shared.redis import connect
from tests.utils.clients import session, wait_for
from tests.utils.registry import registry_on

pytestmark = pytest.mark.anyio
OPENING = Opening({"protocolVersion": "2025-11-25", "capabilities": {}}, "2025-11-25")


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(lease_module, "time", clock)
    return clock


def test_the_owner_stops_with_a_margin_before_a_takeover_may_begin():
    assert STOP_AFTER_SECONDS + MARGIN_SECONDS == OWNER_TIMEOUT_SECONDS and MARGIN_SECONDS >= 0.5


def test_the_lease_runs_from_when_the_beat_was_sent_not_when_it_was_answered(clock):
    lease = Lease()
    assert not lease.held()  # no beat answered yet
    sent = clock.now
    clock.now += 1.0  # a slow answer
    lease.renewed(sent)
    assert lease.held() and lease.epoch == 1
    clock.now = sent + STOP_AFTER_SECONDS - 0.01
    assert lease.held()
    clock.now = sent + STOP_AFTER_SECONDS
    assert not lease.held()


def test_a_lease_regained_after_a_lapse_is_a_new_epoch_and_one_renewed_in_time_is_not(clock):
    lease = Lease()
    lease.renewed(clock.now)
    clock.now += STOP_AFTER_SECONDS - 0.1
    lease.renewed(clock.now)
    assert lease.epoch == 1
    clock.now += STOP_AFTER_SECONDS + 0.1
    lease.renewed(clock.now - 0.2)  # a beat sent before the lapse, answered after it: the lapse counts
    assert lease.epoch == 2 and lease.held()


async def test_a_lapse_is_seen_even_when_the_next_beat_renews_the_lease_before_anyone_looks(clock):
    """A process paused past its lease wakes with the beat that renews it ready to run first: the registry still
    learns that the lease lapsed (and checks every session it holds), from the epoch the renewal counted."""
    lease = Lease()
    lease.renewed(clock.now)
    seen: list[int] = []
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: _append(seen, lease.epoch_after(1)))
        await anyio.sleep(0)
        clock.now += STOP_AFTER_SECONDS + 5  # paused: the lease lapsed while nothing ran
        lease.renewed(clock.now)  # and the first thing after the pause is a beat Redis answers
        with anyio.fail_after(1):
            while not seen:
                await anyio.sleep(0)
    assert seen == [2] and lease.held()


async def _append(into: list[int], epoch) -> None:
    into.append(await epoch)


async def test_a_session_is_not_claimed_while_its_owners_beat_lives(redis_url):
    client = connect(redis_url)
    owner = registry_on(client, "app1", "http://127.0.0.1:1", ttl_seconds=60)
    taker = registry_on(client, "app2", "http://127.0.0.1:2", ttl_seconds=60)
    await owner.register("s-claimed", OPENING)
    await owner.liveness._beat()  # its key lives for OWNER_TIMEOUT_SECONDS
    assert await taker.claim("s-claimed", owner.owner_id) is None
    await client.delete(OWNER.format(owner.owner_id))  # the beat expired
    claimed = await taker.claim("s-claimed", owner.owner_id)
    assert claimed is not None and claimed.generation == 2
    await client.aclose(close_connection_pool=True)


async def test_a_held_session_acts_only_while_the_lease_is_held_and_again_once_confirmed(redis_url, clock):
    client = connect(redis_url)
    registry = registry_on(client, "app1", "http://127.0.0.1:1", ttl_seconds=60)
    registry.lease.renewed(clock.now)
    await registry.register("s-held", OPENING)
    assert registry.acting_for("s-held")
    clock.now += STOP_AFTER_SECONDS
    assert not registry.acting_for("s-held")
    registry.lease.renewed(clock.now)  # back, a new epoch: nothing acts before Redis says it is still ours
    assert not registry.acting_for("s-held")
    with anyio.fail_after(5):
        assert await registry.regain("s-held")
    assert registry.acting_for("s-held")
    await client.hset("mcp:session:s-held", "owner", "app2:0")  # taken over while cut off
    clock.now += STOP_AFTER_SECONDS
    registry.lease.renewed(clock.now)
    with anyio.fail_after(5):
        assert not await registry.regain("s-held")
    assert not registry.acting_for("s-held") and not registry.owns("s-held")
    await client.aclose(close_connection_pool=True)


def test_an_owner_cut_off_from_redis_sends_nothing_once_its_session_may_be_taken_over(tmp_path):
    """app1's link to Redis is stopped mid-call: its bytes go unanswered, as in a partition. Before the cut,
    progress flows; app1 ends its GET stream and sends no more progress within STOP_AFTER_SECONDS of its last
    answered beat, before app2 takes the session over (the time app2 logs its claim); when the link flows again
    app1 finds the session gone and ends the call's stream with an error that says only "retry with the same id";
    the same request id sent to app2 then runs there to its end."""
    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port(), redis_links=True) as stack:
        client = session(stack.instance_url("app1"))
        other = McpClient(requests.Session(), stack.instance_url("app2"), timeout=(5, 30))
        other.session_id, other.protocol_version = client.session_id, client.protocol_version
        request_id, steps = client.next_id(), 40
        call = {"name": "slow_task", "arguments": {"steps": steps, "step_seconds": 0.2}}
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": call}
        arrived: list[tuple[float, dict]] = []  # (wall clock, message): the logs' clock
        ends: dict[str, float] = {}

        def read_call() -> None:
            resp = client.http.post(client.url, json=body, headers=client.headers(), stream=True, timeout=30)
            with resp:
                for message in stream_messages(resp):
                    arrived.append((time.time(), message))
            ends["call"] = time.time()

        def read_get_stream() -> None:
            with client.open_stream(read_timeout=30) as stream:
                for _ in stream.iter_lines():
                    pass
            ends["get"] = time.time()

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            reading = [pool.submit(read_get_stream), pool.submit(read_call)]
            wait_for(lambda: len(arrived) >= 6, timeout=10)  # progress and logs flow
            with stack.paused(link_of("app1")):
                cut = time.time()
                # Once app1 is silent (a request it took before would wait for Redis with it, MCP_REDIS_RIDE_THROUGH),
                # it refuses app2's hop at once, and app2 claims the session as soon as app1's beat has expired.
                wait_for(lambda: time.time() > cut + STOP_AFTER_SECONDS + 0.2, timeout=5)
                assert _answered(other)
                claimed = _claimed_at(stack.run_dir / "app2.log")
                wait_for(lambda: time.time() > claimed + 1.0, timeout=5)  # the cut lasts on meanwhile
            healed = time.time()
            for future in reading:
                future.result(timeout=OWNER_TIMEOUT_SECONDS + 15)

        *sent, (told, fenced) = arrived
        assert fenced.get("id") == request_id and "stopped acting for the session" in fenced["error"]["message"]
        assert told > healed  # once app1 heard it lost the session: before, it sent nothing
        last = sent[-1][0]
        assert last < cut + STOP_AFTER_SECONDS + 0.3, f"app1 sent for {last - cut:.2f} s after the cut"
        assert last < claimed and ends["get"] < claimed, (last - cut, ends["get"] - cut, claimed - cut)
        assert claimed > cut + STOP_AFTER_SECONDS
        assert not any(message.get("id") == request_id for _, message in sent)  # no answer from app1
        assert ends["call"] > healed, (ends["call"] - cut, healed - cut, claimed - cut)  # once app1 heard it lost it
        again = other.request("tools/call", call, request_id=request_id)
        assert again.result is not None and again.result["content"][0]["text"] == f"done: {steps} steps"
        assert "this owner's lease lapsed" in (stack.run_dir / "app1.log").read_text()


def _answered(client: McpClient) -> bool:
    """Whether a call of `client` was answered within 15 s (each refused one sent again)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if client.call_tool("whoami").result is not None:
            return True
    return False


def _claimed_at(log: Path) -> float:
    """When the instance logging to `log` took a session over (its log line's time)."""
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("msg") == "took a session over":
            return datetime.fromisoformat(json.loads(line)["ts"].replace("Z", "+00:00")).timestamp()
    raise AssertionError("no session was taken over")
