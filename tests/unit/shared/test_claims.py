"""Names claimed once (the hop's nonces, side-effecting requestStates): in process, and on a real
redis-server, full or not. The whole path through the SDK is in tests/stack/test_modern_scaling.py."""

from __future__ import annotations

import itertools

import pytest
import redis
from mcp.server.mcpserver import MCPServer

from mcp_cluster.shared import claims as claims_module
from mcp_cluster.shared.claims import Claims, TooManyClaims
from mcp_cluster.shared.redis import RedisUnavailable, connect
from mcp_cluster.shared.single_use import SingleUseRequestState
from tests.utils.faults import increments_through_stalls

pytestmark = pytest.mark.anyio


async def test_a_name_is_claimed_once_and_a_single_use_guard_claims_states():
    here = Claims(None, "test:{}", 60)
    assert await here.first("a") and not await here.first("a") and await here.first("b")
    guard = SingleUseRequestState(MCPServer("single-use"), redis=None)
    guard.install()
    assert await guard.claim("sealed") and not await guard.claim("sealed")


async def test_the_memory_bound_refuses_rather_than_forget_a_live_claim(monkeypatch):
    monkeypatch.setattr(claims_module, "MEMORY_CLAIMS", 3)
    here = Claims(None, "test:{}", 60)
    for n in range(3):
        assert await here.first(f"name-{n}")
    with pytest.raises(TooManyClaims, match="did not run: retry in a few minutes"):
        await here.first("name-3")
    assert not await here.first("name-0")  # still remembered: its replay is refused


async def test_claims_lapse_with_their_ttl(monkeypatch):
    monkeypatch.setattr(claims_module, "MEMORY_CLAIMS", 1)
    here = Claims(None, "test:{}", 60)
    assert await here.first("name-0")
    later = claims_module.time.monotonic() + 61
    monkeypatch.setattr(claims_module.time, "monotonic", lambda: later)  # the clock, not the code under test
    assert await here.first("name-1")


async def test_a_full_redis_still_refuses_replays_and_claims_nothing_new_in_one_process_alone(redis_url):
    """Two instances share the Redis: while it is full, a new name is refused on both ("full", did not run: a claim
    kept in one process would let its replay through the other), a name claimed before stays refused."""
    first, second = (Claims(connect(redis_url), "mcp:test-claim:{}", 60) for _ in range(2))
    admin = redis.Redis.from_url(redis_url)
    assert await first.first("before")
    admin.config_set("maxmemory", 1)  # below what it holds: every write refused
    try:
        assert not await second.first("before")  # claimed in Redis before it filled up
        for instance in (first, second):
            with pytest.raises(RedisUnavailable, match=r"is full and refuses writes .*did not run: retry"):
                await instance.first("during")
    finally:
        admin.config_set("maxmemory", 0)
    assert await second.first("during") and not await first.first("during")


async def test_a_first_claim_under_a_redis_stall_is_claimed_and_its_replay_refused(redis_server):
    """redis-server SIGSTOPped for longer than the socket timeout while names are claimed without pause: redis-py
    re-sends each claim the timeout cut off, and every first claim answered says claimed (a bare SET NX re-sent
    after the first went through refused it as its own replay); each claimed again is refused."""
    url, server = redis_server
    shared = Claims(connect(url), "mcp:test-stalled-claim:{}", 60)
    names = (f"name-{n}" for n in itertools.count())
    claimed: list[str] = []

    async def claim_one() -> bool:
        name = next(names)
        first = await shared.first(name)
        claimed.append(name)
        return first

    answered, failed = await increments_through_stalls(server.pid, claim_one, RedisUnavailable)
    assert answered and all(answered), f"{answered.count(False)} of {len(answered)} first claims refused"
    assert not any([await shared.first(name) for name in claimed])  # a replay of each, refused
    assert failed == [], failed
