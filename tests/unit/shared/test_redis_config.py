"""What an instance checks of its Redis at start, on a real redis-server: a Redis that may evict keys is refused
in one line, and the instance then does not start; no append-only file, too few replicas, or a user that may not
run INFO are warnings."""

from __future__ import annotations

import logging
import secrets

import pytest
import redis
from mcp.server.mcpserver import MCPServer

from mcp_cluster import InstanceSettings, Preset, SessionStore
from mcp_cluster.instance import Instance
from mcp_cluster.shared.redis import connect
from mcp_cluster.shared.redis_config import UnsafeRedis, check_redis
from tests.utils.asgi import served

pytestmark = pytest.mark.anyio


@pytest.fixture
def admin(redis_url):
    client = redis.Redis.from_url(redis_url)
    policy = client.config_get("maxmemory-policy")["maxmemory-policy"]
    yield client
    client.config_set("maxmemory-policy", policy)
    client.close()


async def test_a_redis_that_may_evict_keys_is_refused_in_one_line(redis_url, admin):
    admin.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(UnsafeRedis) as refused:
        await check_redis(connect(redis_url))
    assert "\n" not in str(refused.value) and "maxmemory-policy is allkeys-lru" in str(refused.value)
    assert "set it to noeviction" in str(refused.value)


async def test_an_instance_given_such_a_redis_does_not_start(redis_url, admin):
    admin.config_set("maxmemory-policy", "volatile-lru")  # sessions expire: they would be the first to go
    settings = InstanceSettings(
        "checked", preset=Preset.STATEFUL_JSON, session_store=SessionStore.REDIS, redis_url=redis_url
    )
    did_not_start = pytest.RaisesExc(RuntimeError, match="the app did not start: .*maxmemory-policy is volatile-lru")
    with pytest.RaisesGroup(did_not_start, flatten_subgroups=True):
        async with served(Instance(MCPServer("checked"), settings, None).app):
            pass


async def test_what_a_deployment_may_mean_is_a_warning(redis_url, admin, caplog):
    """This test Redis keeps no append-only file and has no replica; a user without +info is not checked."""
    with caplog.at_level(logging.WARNING, logger="mcp_cluster.shared.redis_config"):
        await check_redis(connect(redis_url, replicas_to_wait=1))
    assert "no append-only file" in caplog.text and "1 replicas" not in caplog.text
    assert "has 0 replicas connected; MCP_REDIS_WAIT_REPLICAS waits for 1" in caplog.text
    user, password = f"noinfo-{secrets.token_hex(4)}", secrets.token_hex(16)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["mcp:*"], commands=["+ping", "+get"])
    try:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mcp_cluster.shared.redis_config"):
            await check_redis(connect(redis_url.replace("redis://", f"redis://{user}:{password}@")))
        assert "its user may not run INFO" in caplog.text
    finally:
        admin.acl_deluser(user)
