"""The redis-ha variant with real processes: a primary, a replica and three Sentinels (the same redis-server
build), three uvicorn instances following them through a `redis+sentinel://` URL, nginx round-robin, and
each write answered only once the replica has it (MCP_REDIS_WAIT_REPLICAS=1, the default through Sentinels),
each server writing only with a replica in sync (min-replicas-to-write). The primary's SIGKILL under load loses no
session, no acknowledged write and no call; a write no replica took is refused, never acknowledged."""

from __future__ import annotations

import pytest
import redis.exceptions

from loadtest.experiments.faults.load import CountingLoad
from loadtest.experiments.faults.scorecard import HA
from loadtest.harness.stack import Stack, free_port
from mcp_cluster.shared.keys import CALL, CLIENT_CALLS
from mcp_cluster.shared.redis import (
    CALL_KEPT_MS,
    RedisUnavailable,
    applied_once,
    connect,
    run_function,
    run_once,
    sentinel_address,
)
from tests.utils.clients import wait_for

SESSIONS = 6


def test_a_primary_failover_loses_no_session_and_no_acknowledged_write(tmp_path):
    """First the replica stops for 1.5 s: writes wait for it (none is acknowledged without it) and no call needs
    a retry; then the primary is SIGKILLed and failed over."""
    with Stack(run_dir=tmp_path, policy="round-robin", store="redis", port=free_port(), **HA) as stack:
        assert stack.primary() == "redis"
        with CountingLoad(stack.url, SESSIONS) as load:
            load.go_on(10)
            stack.pause("redis-replica", 1.5)
            load.go_on(5)
            assert load.tally.calls_retried == 0, load.tally.retried  # each write waited for the replica
            stack.wait_replicated()
            stack.fail_over()
            assert stack.primary() == "redis-replica"
            load.go_on(10, timeout=60)  # every session counts on, on the new primary
        tally = load.tally
        assert (tally.sessions_lost, tally.acknowledged_lost, tally.doubled) == (0, 0, 0), tally
        assert min(load.counted) > 0, tally
        assert (tally.failed, tally.retried) == ({}, {}), tally  # every call waited for the new primary: no retry


@pytest.mark.anyio
async def test_a_write_no_replica_took_is_refused_not_acknowledged(redis_url):
    redis = connect(redis_url, replicas_to_wait=1)  # a Redis with no replica at all
    script = applied_once("return redis.call('INCR', KEYS[1])").bound_to(redis)
    try:
        with pytest.raises(RedisUnavailable, match=r"Redis\) is unavailable \(NotReplicated\)"):
            await run_once(script, ["test:ha:counter"], [])
        redis.replicas_to_wait = 0
        assert await run_once(script, ["test:ha:counter"], []) == 2  # the refused write may stay: as unanswered
    finally:
        await redis.aclose()


@pytest.mark.anyio
async def test_a_write_sent_again_is_answered_only_once_the_replica_has_it(tmp_path):
    """The first send of a keyed write reaches the primary while the replica is stopped: refused. Sent again with
    its call id, on another connection as a retry comes, the primary has it already: refused again while the
    replica lags (its answer alone is no proof), and answered once the replica has it."""
    with Stack(run_dir=tmp_path, store="redis", port=free_port(), **HA) as stack:
        sends = [connect(stack.redis_url, replicas_to_wait=1) for _ in range(2)]
        scripts = [applied_once("return redis.call('INCR', KEYS[1])").bound_to(redis) for redis in sends]
        sent = {"keys": ["test:ha:resent", CLIENT_CALLS.format(""), CALL.format("call-1")], "args": [0, CALL_KEPT_MS]}
        try:
            with stack.paused("redis-replica"):
                for script in scripts:
                    with pytest.raises(RedisUnavailable, match=r"\(NotReplicated\)"):
                        await run_function(script, **sent)
            assert await run_function(scripts[1], **sent) == 1  # applied once, now on the replica too
        finally:
            for redis in sends:
                await redis.aclose()


@pytest.mark.parametrize(
    ("url", "address"),
    [
        (
            "redis+sentinel://s1:26379,s2:26379,s3:26379/mcp/0",
            ([("s1", 26379), ("s2", 26379), ("s3", 26379)], "mcp", 0, None),
        ),
        ("redis+sentinel://127.0.0.1:5000/main", ([("127.0.0.1", 5000)], "main", 0, None)),
        ("redis+sentinel://mcp@s1:26379/mcp/2", ([("s1", 26379)], "mcp", 2, "mcp")),
    ],
)
def test_a_sentinel_url_names_the_sentinels_the_service_the_db_and_the_user(url, address):
    assert sentinel_address(url) == address


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://s1/mcp", "redis+sentinel://s1:1", "redis+sentinel://:1/mcp/x", "redis+sentinel://u:pw@s1:1/m"],
)
def test_a_sentinel_url_without_ports_or_service_or_with_a_password_is_refused(url):
    with pytest.raises(
        ValueError, match=r"valid: redis\+sentinel://\[user@\]host:port\[,host:port...\]/service\[/db\]"
    ):
        sentinel_address(url)


def test_a_primary_cut_off_from_its_replica_refuses_writes(tmp_path):
    """min-replicas-to-write 1, min-replicas-max-lag 5 on both servers (redis/run-redis.sh): a primary whose
    replica has been silent past the lag refuses writes (which its demotion would throw away), and takes them
    again once the replica is back."""
    with Stack(run_dir=tmp_path, policy="round-robin", store="redis", port=free_port(), **HA) as stack:
        for name in ("redis", "redis-replica"):
            with stack.redis_client(name) as server:
                config = server.config_get("min-replicas-*")
            assert config == {"min-replicas-to-write": "1", "min-replicas-max-lag": "5"}, name
        with stack.redis_client("redis") as primary:
            primary.set("test:ha:before", 1)
            with stack.paused("redis-replica"):
                refused = wait_for(lambda: _refused_write(primary), timeout=15, interval=0.5)
                assert str(refused).startswith("NOREPLICAS")
            wait_for(lambda: _refused_write(primary) is None, timeout=15, interval=0.5)


def _refused_write(primary) -> redis.exceptions.ResponseError | None:
    try:
        primary.set("test:ha:probe", 1)
    except redis.exceptions.ResponseError as exc:
        return exc
    return None


def test_the_instances_secret_reaches_no_further_than_the_mcp_user(tmp_path):
    """Each Redis user has a secret of its own (redis/users.acl), and the instances hold only `mcp`'s: with it no
    one logs in as `sentinel` (SLAVEOF stops every write) or `replica` (PSYNC copies the dataset), and on a
    Sentinel `mcp` may only ask where the servers are, never re-point or forget them."""
    with Stack(run_dir=tmp_path, policy="round-robin", store="redis", port=free_port(), **HA) as stack:
        apps_secret = stack.password()
        assert len({stack.password(user) for user in ("mcp", "replica", "sentinel", "admin")}) == 4
        for user in ("sentinel", "replica", "admin", "default"):
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(port=stack.proc("redis").port, username=user, password=apps_secret).ping()
        with redis.Redis(port=stack.proc("redis").port, username="mcp", password=apps_secret) as apps:
            for command in (("SLAVEOF", "127.0.0.1", "1"), ("PSYNC", "?", "-1"), ("CONFIG", "SET", "maxmemory", "1")):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    apps.execute_command(*command)
        sentinel = stack.proc("sentinel1").port
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=sentinel, username="sentinel", password=apps_secret).ping()
        with redis.Redis(port=sentinel, username="mcp", password=apps_secret) as asking:
            assert asking.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mcp")
            for command in (
                ("SENTINEL", "REMOVE", "mcp"),
                ("SENTINEL", "MONITOR", "evil", "127.0.0.1", "1", "1"),
                ("SENTINEL", "SET", "mcp", "down-after-milliseconds", "1"),
                ("SENTINEL", "FAILOVER", "mcp"),
            ):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    asking.execute_command(*command)
        with stack.redis_client("sentinel1") as sentinel_user:
            assert sentinel_user.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mcp")
