"""Taking a dead owner's session over, and handing sessions over on SIGTERM, in-process against a real
redis-server: one claim and one rebuild however many of the session's requests arrive at once, a lost claim
answer claimed again, and no call started on a session whose handover has begun."""

from __future__ import annotations

import dataclasses
import secrets

import anyio
import pytest
from mcp.server.mcpserver import Context, MCPServer
from redis.asyncio import Redis

from mcp_cluster import InstanceSettings, Preset, SessionStore, session_state
from mcp_cluster.instance import Instance
from mcp_cluster.sessions.records import Opening
from mcp_cluster.shared import keys
from mcp_cluster.shared.redis import RedisUnavailable
from tests.utils.asgi import served
from tests.utils.registry import registry_on

pytestmark = pytest.mark.anyio
VERSION = "2025-11-25"
PARAMS = {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
OPENING = Opening(PARAMS, VERSION)
INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": PARAMS}


@pytest.fixture
async def redis(redis_url):
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def counting_server() -> MCPServer:
    mcp = MCPServer("takeover")

    @mcp.tool()
    async def count(ctx: Context) -> int:
        return await session_state(ctx).increment("n")

    return mcp


def taker_settings(redis_url: str) -> InstanceSettings:
    return InstanceSettings("taker", preset=Preset.STATEFUL_JSON, session_store=SessionStore.REDIS, redis_url=redis_url)


def call(session_id: str, request_id: int) -> dict:
    headers = {
        "mcp-session-id": session_id,
        "mcp-protocol-version": VERSION,
        "accept": "application/json, text/event-stream",
    }
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "count", "arguments": {}}}
    return {"headers": headers, "json": body}


async def test_requests_arriving_while_the_claim_is_answered_wait_for_the_rebuild(redis, redis_url):
    """The claim has changed the owner in Redis but its answer is still on the way (a stall of this process):
    the session's other requests see this process named as owner, and must wait rather than end the session."""
    instance = Instance(counting_server(), taker_settings(redis_url), None)
    registry = instance.member.registry
    session_id = secrets.token_hex(16)
    await registry_on(redis, "gone", "http://127.0.0.1:1", 60).register(session_id, OPENING)
    claimed = registry.claim

    async def stalled_claim(*args):
        opening = await claimed(*args)
        if opening is not None:
            await anyio.sleep(0.3)  # the stall: long enough for every other request to look the owner up
        return opening

    registry.claim = stalled_claim
    answers: list[dict] = []
    async with served(instance.app) as client:

        async def count(request_id: int) -> None:
            response = await client.post("/mcp", **call(session_id, request_id))
            answers.append({"status": response.status_code, **response.json()})

        async with anyio.create_task_group() as group:
            for request_id in range(1, 6):
                group.start_soon(count, request_id)
        record = await redis.hgetall(keys.SESSION.format(session_id))
    results = sorted(answer.get("result", {}).get("structuredContent", {}).get("result", 0) for answer in answers)
    assert results == [1, 2, 3, 4, 5], answers
    assert record[b"owner"].decode() == registry.owner_id and record[b"gen"] == b"2", "one claim, one generation on"


async def test_a_claim_whose_answer_was_lost_is_claimed_again_not_ended(redis, redis_url):
    """Redis ran the claim but its answer never came (both tries timed out): the record now names this
    process, which does not hold the session. The next request claims it again and is served; the record is
    not taken for one left behind by an ended session."""
    instance = Instance(counting_server(), taker_settings(redis_url), None)
    registry = instance.member.registry
    session_id = secrets.token_hex(16)
    await registry_on(redis, "gone", "http://127.0.0.1:1", 60).register(session_id, OPENING)
    claimed, lost = registry.claim, []

    async def claim_losing_the_first_answer(*args):
        opening = await claimed(*args)
        if not lost:
            lost.append(opening)
            raise RedisUnavailable()
        return opening

    registry.claim = claim_losing_the_first_answer
    async with served(instance.app) as client:
        first = await client.post("/mcp", **call(session_id, 1))
        second = await client.post("/mcp", **call(session_id, 2))
    assert first.status_code == 503 and "unavailable" in first.json()["error"]["message"]
    assert second.json()["result"]["structuredContent"]["result"] == 1
    assert await redis.hget(keys.SESSION.format(session_id), "owner") == registry.owner_id.encode()


async def test_a_claim_sent_again_after_a_timeout_returns_the_first_answer(redis):
    """The Redis client re-sends a command whose answer timed out; Redis may have run the first copy."""
    session_id = secrets.token_hex(16)
    dead = registry_on(redis, "gone", "http://127.0.0.1:1", 60)
    await dead.register(session_id, OPENING)
    taker = registry_on(redis, "taker", "http://127.0.0.1:2", 60)
    first = await taker.claim(session_id, dead.owner_id)
    again = await taker.claim(session_id, dead.owner_id)
    assert first == again == dataclasses.replace(OPENING, generation=2, heard=first.heard)
    assert set(first.heard) == {"#tools", "#prompts", "#resources"}  # the lists it hears, from its start
    assert await redis.hget(keys.SESSION.format(session_id), "gen") == b"2"
    assert await registry_on(redis, "late", "http://127.0.0.1:3", 60).claim(session_id, dead.owner_id) is None


async def test_a_call_that_arrives_while_its_session_is_handed_over_does_not_start_here(redis, redis_url):
    """Draining (SIGTERM): once a session's handover has begun, a new call of it runs nowhere on this instance.
    With no other instance to take it, it gets a 503 that says nothing ran."""
    instance = Instance(counting_server(), taker_settings(redis_url), None)
    registry = instance.member.registry
    released, handing = registry.release, anyio.Event()

    async def stalled_release(session_id: str) -> None:
        handing.set()
        await anyio.sleep(0.3)  # the stall: the call below arrives meanwhile
        await released(session_id)

    registry.release = stalled_release
    async with served(instance.app) as client:
        opened = await client.post("/mcp", headers={"accept": "application/json, text/event-stream"}, json=INITIALIZE)
        session_id = opened.headers["mcp-session-id"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await client.post("/mcp", headers=call(session_id, 0)["headers"], json=initialized)
        assert (await client.post("/mcp", **call(session_id, 1))).json()["result"]["structuredContent"]["result"] == 1
        async with anyio.create_task_group() as group:
            group.start_soon(instance.router.handover.drain, 5.0)
            await handing.wait()
            late = await client.post("/mcp", **call(session_id, 2))
    assert late.status_code == 503 and "no other instance" in late.json()["error"]["message"]
    record = await redis.hgetall(keys.SESSION.format(session_id.partition(".")[2]))
    assert record[b"s:n"] == b"1" and record[b"owner"].startswith(b"released:")


async def test_an_initialize_in_flight_when_the_drain_begins_is_answered_before_its_session_is_handed_over(
    redis, redis_url
):
    """stateful-sse: SIGTERM while an initialize is served (its session held here, its answer not yet sent): the
    client gets the answer, not a stream that ends without it, and the session is handed over after."""
    settings = dataclasses.replace(taker_settings(redis_url), preset=Preset.STATEFUL_SSE)
    instance = Instance(counting_server(), settings, None)
    registry = instance.member.registry
    register, registering = registry.register, anyio.Event()

    async def stalled_register(session_id: str, opening: Opening) -> None:
        registering.set()
        await anyio.sleep(0.3)  # the stall: the drain begins meanwhile
        await register(session_id, opening)

    registry.register = stalled_register
    answers = []
    headers = {"accept": "application/json, text/event-stream"}
    async with served(instance.app) as client:

        async def initialize() -> None:
            answers.append(await client.post("/mcp", headers=headers, json=INITIALIZE))

        async with anyio.create_task_group() as group:
            group.start_soon(initialize)
            await registering.wait()
            group.start_soon(instance.router.handover.drain, 5.0)
    (opened,) = answers
    assert opened.status_code == 200 and '"protocolVersion"' in opened.text, opened.text
    record = await redis.hgetall(keys.SESSION.format(opened.headers["mcp-session-id"].partition(".")[2]))
    assert record[b"owner"].startswith(b"released:")
