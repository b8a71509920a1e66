"""How `SessionRouter` answers a request of a session another instance owns, when nginx (the session policy)
asks to be told the owner: in-process against a real redis-server. The whole hop, through a real nginx, is
in tests/stack/test_redis_sessions.py."""

from __future__ import annotations

import secrets

import anyio
import pytest
from mcp.server.mcpserver import MCPServer
from redis.asyncio import Redis
from starlette.types import Message

from mcp_cluster import InstanceSettings, Preset, SessionStore
from mcp_cluster.instance import Instance
from mcp_cluster.sessions.records import Opening
from mcp_cluster.shared import keys
from tests.utils.asgi import INITIALIZE, JSON_RPC, served
from tests.utils.registry import registry_on

pytestmark = pytest.mark.anyio
VERSION = "2025-11-25"
PARAMS = {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
ASKED_BY_NGINX = {"x-mcp-owner-redirect": "on"}


@pytest.fixture
async def redis(redis_url):
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def owned_elsewhere(redis: Redis, instance_id: str) -> str:
    """A session whose owner is a live process of `instance_id` (its heartbeat names a URL nothing listens on)."""
    session_id = secrets.token_hex(16)
    owner = registry_on(redis, instance_id, "http://127.0.0.1:1", 60)
    await owner.register(session_id, Opening(PARAMS, VERSION))
    await redis.set(keys.OWNER.format(owner.owner_id), "http://127.0.0.1:1", ex=60)
    return session_id


def whoami(session_id: str, extra: dict[str, str]) -> dict:
    headers = {"mcp-session-id": session_id, "mcp-protocol-version": VERSION, "accept": "application/json"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    return {"headers": headers | extra, "json": body}


def instance(redis_url: str) -> Instance:
    settings = InstanceSettings(
        "app1", preset=Preset.STATEFUL_JSON, session_store=SessionStore.REDIS, redis_url=redis_url
    )
    return Instance(MCPServer("router"), settings, None)


async def test_asked_by_nginx_an_instance_names_the_owner_and_runs_nothing(redis, redis_url):
    session_id = await owned_elsewhere(redis, "app2")
    async with served(instance(redis_url).app) as client:
        answered = await client.post("/mcp", **whoami(session_id, ASKED_BY_NGINX))
    assert answered.status_code == 421
    assert answered.headers["x-accel-redirect"] == "@session_owner" and answered.headers["x-mcp-owner"] == "app2"
    assert answered.json()["error"]["message"].startswith("this session is served by instance app2")


@pytest.mark.parametrize(
    ("owner_instance", "extra"),
    [("app1", ASKED_BY_NGINX), ("app2", {"x-mcp-owner-redirect": "yes"})],
    ids=["a sibling worker of this instance", "not asked with 'on'"],
)
async def test_otherwise_it_relays_the_request_to_the_owner(redis, redis_url, owner_instance, extra):
    """Relayed: the owner's URL here takes no connection, so the answer is the relay's 503, never a 421."""
    session_id = await owned_elsewhere(redis, owner_instance)
    async with served(instance(redis_url).app) as client:
        answered = await client.post("/mcp", **whoami(session_id, extra))
    message = answered.json()["error"]["message"]
    assert answered.status_code == 503 and message.endswith("busy; did not run: retry"), answered.text


async def test_an_owner_named_in_redis_that_is_no_instance_name_is_not_sent_to_nginx(redis, redis_url):
    """Redis may hold anything: an owner whose instance part is no valid MCP_INSTANCE_ID is relayed (and
    refused by MCP_PEER_URLS there), never written into a header for nginx."""
    session_id = await owned_elsewhere(redis, "app2")
    await redis.hset(keys.SESSION.format(session_id), "owner", "App 2\r\nx:1")
    await redis.set(keys.OWNER.format("App 2\r\nx:1"), "http://127.0.0.1:1", ex=60)
    async with served(instance(redis_url).app) as client:
        answered = await client.post("/mcp", **whoami(session_id, ASKED_BY_NGINX))
    assert answered.status_code != 421 and "x-mcp-owner" not in answered.headers


async def test_a_get_stream_whose_session_is_handed_over_as_it_opens_is_served_where_the_session_went(
    redis_url, monkeypatch
):
    """A drain hands a session over while its new GET stream is on its way (priming it reads Redis, before the
    SDK answers): the stream opens where the session went (here: taken back, the only instance), never a 503
    saying the instance lost touch with Redis."""
    from mcp_cluster.cluster.event_store import RedisEventStore

    latest_event_id, priming, handed = RedisEventStore.latest_event_id, anyio.Event(), anyio.Event()

    async def latest_after_the_handover(store: RedisEventStore) -> str:
        priming.set()
        await handed.wait()
        return await latest_event_id(store)

    settings = InstanceSettings(
        "app1", preset=Preset.STATEFUL_SSE, session_store=SessionStore.REDIS, redis_url=redis_url
    )
    served_instance = Instance(MCPServer("router"), settings, None)
    async with served(served_instance.app) as client:
        session_id = (await client.post("/mcp", json=INITIALIZE, headers=JSON_RPC)).headers["mcp-session-id"]
        monkeypatch.setattr(RedisEventStore, "latest_event_id", latest_after_the_handover)
        headers = {"mcp-session-id": session_id, "mcp-protocol-version": VERSION, "accept": "text/event-stream"}
        starts: list[Message] = []
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(_get_stream_start, served_instance.app, headers, starts)
                await priming.wait()
                await served_instance.router.handover.handed_over(session_id.partition(".")[2])  # as a drain does
                handed.set()
    (start,) = starts
    assert start["status"] == 200, start


async def _get_stream_start(app, headers: dict[str, str], starts: list[Message]) -> None:
    """Open a GET stream on `app` (raw ASGI: it never ends); put its answer's start in `starts`, then leave."""
    with anyio.CancelScope() as reading:

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                starts.append(message)
                reading.cancel()

        requests = iter([{"type": "http.request", "body": b"", "more_body": False}])

        async def receive() -> Message:
            return next(requests, None) or await anyio.sleep_forever()

        raw = [(name.encode(), value.encode()) for name, value in {**headers, "host": "127.0.0.1:8000"}.items()]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http"}
        scope |= {"path": "/mcp", "raw_path": b"/mcp", "query_string": b"", "root_path": "", "headers": raw}
        await app(scope | {"client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}, receive, send)
