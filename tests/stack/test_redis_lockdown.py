"""Redis locked down, as compose runs it (redis/run-redis.sh): only its ACL users get in, the instances'
user reaches only the `mcp:` keys with the commands the layer sends, a full Redis refuses writes with a
clear 503, and whatever the instances read back from Redis is checked before it is used. Real
redis-server, uvicorn instances and nginx (the local stack)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import redis
import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import INSTANCES, PROJECT_ROOT
from mcp_cluster.cluster.lease import OWNER_TIMEOUT_SECONDS
from mcp_cluster.sessions.quota import MAX_OPENING_BYTES
from mcp_cluster.sessions.records import _LOOKUP
from mcp_cluster.shared import keys
from mcp_cluster.shared.functions import RedisFunction, every_function
from mcp_cluster.shared.redis import RedisUnavailable, call_function, connect
from tests.utils.clients import ask, every_operation, modern_call, session, wait_for
from tests.utils.docs import run_block_in

pytestmark = pytest.mark.anyio
OPENING = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "lockdown", "version": "1"}}
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def stack(stack_for) -> Stack:
    return stack_for("stateful-sse", "round-robin", "redis")


def app_user(stack: Stack) -> redis.Redis:
    return redis.Redis(port=stack.proc("redis").port, username="mcp", password=stack.password(), socket_timeout=2)


def test_redis_lets_in_only_its_users_and_the_apps_reach_only_their_keys(stack):
    with socket.create_connection(("127.0.0.1", stack.proc("redis").port), timeout=2) as anonymous:
        anonymous.sendall(b"GET mcp:cluster-secret\r\n")
        assert anonymous.recv(64).startswith(b"-NOAUTH")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=stack.proc("redis").port, username="mcp", password="guessed").ping()
    apps = app_user(stack)
    assert apps.set("mcp:lockdown-test", "1") and apps.delete("mcp:lockdown-test") == 1
    for refused in (
        lambda: apps.get("other:key"),
        lambda: apps.flushall(),
        lambda: apps.config_get("*"),
        lambda: apps.keys("*"),
        lambda: apps.publish("other-channel", "x"),
        lambda: apps.eval("return redis.call('GET', KEYS[1])", 1, "other:key"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()


def test_the_apps_call_the_layers_functions_and_run_no_other_lua(stack):
    """Redis loaded every function at start (run-redis.sh); the apps' user may call them, not load or run Lua."""
    with stack.redis_client("redis") as admin:
        assert {function.name for function in every_function("app")} <= listed(admin)
    apps = app_user(stack)
    assert apps.fcall(_LOOKUP.name, 1, "mcp:session:none", "mcp:owner:") is None
    busy_loop = "while true do end"
    for refused in (
        lambda: apps.eval(busy_loop, 0),
        lambda: apps.eval_ro(busy_loop, 0),
        lambda: apps.script_load(busy_loop),
        lambda: apps.evalsha(hashlib.sha1(busy_loop.encode()).hexdigest(), 0),
        lambda: apps.function_load(
            f"#!lua name=mcp_loop\nredis.register_function('mcp_loop', function() {busy_loop} end)"
        ),
        lambda: apps.function_delete(_LOOKUP.name),
        lambda: apps.function_flush(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()


def listed(client: redis.Redis) -> set[str]:
    """The names of the function libraries a Redis holds (FUNCTION LIST)."""
    return {dict(zip(e[::2], e[1::2], strict=True))[b"library_name"].decode() for e in client.function_list()}


def test_the_docs_command_loads_the_functions_into_a_redis_that_lacks_them(redis_server, tmp_path):
    """A Redis not started by run-redis.sh (a managed one): nothing else loads them there."""
    every, port = {function.name for function in every_function("app")}, redis_server[0].rsplit(":", 1)[1].split("/")[0]
    server = redis.Redis(port=int(port))
    (tmp_path / "admin-password").write_text("admin-secret")
    server.acl_setuser(
        "admin", enabled=True, passwords=["+admin-secret"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    server.acl_setuser(
        "apps", enabled=True, passwords=["+apps-secret"], keys=["mcp:*"], commands=["+@all", "-function"]
    )
    server.function_flush()
    try:
        where = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": port}
        as_admin = {**where, "REDIS_ADMIN_PASSWORD_FILE": str(tmp_path / "admin-password")}
        first = run_block_in("load-functions", tmp_path, env=as_admin)
        assert (first.returncode, listed(server)) == (0, every), first.stderr
        assert run_block_in("load-functions", tmp_path, env=as_admin).returncode == 0  # again: nothing changes
        server.function_delete(_LOOKUP.name)
        as_apps = subprocess.run(  # a user that may not load one
            ["sh", "redis/load-functions.sh", "-h", "127.0.0.1", "-p", port, "--user", "apps"],
            cwd=PROJECT_ROOT,
            env={**os.environ, "REDISCLI_AUTH": "apps-secret"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert as_apps.returncode == 1 and "load-functions: Redis refused" in as_apps.stderr
        assert "NOPERM" in as_apps.stderr and listed(server) == every - {_LOOKUP.name}
    finally:
        server.acl_deluser("admin", "apps")
        server.close()


def test_a_server_loads_a_function_it_lacks_again_and_a_call_waits_for_it(stack):
    with stack.redis_client("redis") as admin:
        client = session(stack.instance_url("app1"))  # its owner; app2 looks the owner up, with the function gone
        client.url = stack.instance_url("app2")
        admin.function_delete(_LOOKUP.name)
        assert client.call_tool("whoami").status == 200  # it waited while the server loaded it again (within 5 s)
        assert listed(admin) == {function.name for function in every_function("app")}


async def test_a_function_redis_lacks_and_the_apps_may_not_load_is_named_in_the_error(stack):
    apps = connect(f"redis://mcp@127.0.0.1:{stack.proc('redis').port}/0", password=stack.password())
    unknown = RedisFunction("return 'never loaded'").bound_to(apps)
    try:
        with pytest.raises(RedisUnavailable, match=f"lacks the function {unknown.name} and this user may not load"):
            await call_function(unknown, [], [])
    finally:
        await apps.aclose()


def test_every_capability_needs_no_command_the_acl_refuses(stack):
    with stack.redis_client("redis") as admin:
        admin.acl_log_reset()
    outcomes = every_operation(stack.url)
    assert {name: o.failure for name, o in outcomes.items()} == dict.fromkeys(outcomes)
    _, answers, state = ask(stack.url, "confirm_action", {"action": "lockdown"})  # sealed with the ring in Redis
    done = modern_call(stack.url, "confirm_action", {"action": "lockdown"}, inputResponses=answers, requestState=state)
    assert done.json()["result"]["content"][0]["text"] == "confirmed: lockdown"
    with stack.redis_client("redis") as admin:
        assert admin.acl_log() == []


def test_poisoned_secrets_in_redis_are_replaced_and_every_instance_keeps_serving(stack):
    with stack.redis_client("redis") as admin:
        admin.set(keys.CLUSTER_SECRET, "not hex at all")
        admin.set(keys.REQUEST_STATE_KEYS, '[{"key": "00", "seals_from": 0}]')
    stack.restart("app2")  # reads both at start (the others re-read them every few seconds): ready all the same
    logs = "".join((stack.run_dir / f"{name}.log").read_text() for name in INSTANCES)
    assert "refused the forwarding secret in Redis" in logs and "refused the request-state key ring" in logs
    with stack.redis_client("redis") as admin:
        assert len(admin.get(keys.CLUSTER_SECRET)) == 64 and len(admin.get(keys.REQUEST_STATE_KEYS)) > 64
    client = session(stack.instance_url("app2"))
    client.url = stack.url  # the others pick the new secret up within a few seconds: calls then hop again
    try:
        wait_for(lambda: all(cap.basic_tool(client).failure is None for _ in range(3)), timeout=15)
    finally:
        client.close()


def test_an_owner_url_outside_the_peers_is_never_sent_a_request(stack):
    """Redis names a paused owner at an address that is not an instance's: the request is refused, not sent."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.2", 0))  # loopback, but outside MCP_PEER_URLS (http://127.0.0.1:*, ...)
        listener.listen(8)
        listener.settimeout(0.1)
        client = session(stack.instance_url("app1"))
        with stack.redis_client("redis") as admin:
            owner = admin.hget(keys.SESSION.format(client.session_id.partition(".")[2]), "owner").decode()
            os.killpg(stack.proc("app1").pid, signal.SIGSTOP)
            try:
                admin.set(keys.OWNER.format(owner), f"http://127.0.0.2:{listener.getsockname()[1]}", px=20_000)
                client.url = stack.instance_url("app2")
                outcome = cap.basic_tool(client)
                assert outcome.failure is not None and "503" in outcome.failure
                with pytest.raises(TimeoutError):
                    listener.accept()
                assert "MCP_PEER_URLS does not allow" in (stack.run_dir / "app2.log").read_text()
            finally:
                admin.delete(keys.OWNER.format(owner))
                os.killpg(stack.proc("app1").pid, signal.SIGCONT)
        wait_for(lambda: cap.basic_tool(client).failure is None, timeout=10)
        client.close()


def test_a_session_record_that_holds_no_session_ends_that_session_alone(tmp_path):
    with Stack(run_dir=tmp_path, preset="stateful-json", store="redis", port=free_port()) as stack:
        client = session(stack.instance_url("app1"))
        record = keys.SESSION.format(client.session_id.partition(".")[2])
        os.kill(stack.proc("app1").pid, signal.SIGKILL)
        wait_for(lambda: not stack.proc("app1").alive())
        with stack.redis_client("redis") as admin:
            admin.hset(record, "params", "{not json")
        client.url = stack.instance_url("app2")  # app2 claims the dead owner's session and cannot rebuild it
        assert client.call_tool("whoami").status == 404
        assert "refused a session record" in (stack.run_dir / "app2.log").read_text()
        assert cap.basic_tool(session(stack.instance_url("app2"))).failure is None


def test_a_full_redis_refuses_writes_with_a_clear_503_and_keeps_what_it_has(tmp_path):
    with Stack(run_dir=tmp_path, preset="stateful-json", store="redis", port=free_port()) as stack:
        kept = session(stack.url)
        with stack.full("redis"):  # filled until Redis refused a write (OutOfMemoryError)
            refused = McpClient(requests.Session(), stack.url).initialize()
            assert refused.status == 503
            assert "the shared store (Redis) is full and refuses writes" in refused.error["message"]
            full_since = time.monotonic()  # longer than an owner's heartbeat lasts without a write: they must last
            while time.monotonic() - full_since < OWNER_TIMEOUT_SECONDS + 1:
                assert cap.basic_tool(kept).failure is None  # what is stored goes on being served, on every instance
        assert cap.basic_tool(session(stack.url)).failure is None  # given room again: writes work again


def test_a_session_keeps_only_what_a_rebuild_needs_and_at_most_16_kib_of_it(stack):
    client = McpClient(requests.Session(), stack.url)
    huge = {"sampling": {}, "experimental": {"padding": {"x": "a" * MAX_OPENING_BYTES}}}
    refused = client.initialize(capabilities=huge)
    assert refused.status == 400 and refused.error["code"] == -32602
    assert f"a session keeps at most {MAX_OPENING_BYTES} bytes" in refused.error["message"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {**OPENING, "padding": "b" * 100_000}}
    opened = requests.post(stack.url, json=body, headers=HEADERS, timeout=10)
    assert opened.status_code == 200
    session_id = opened.headers["Mcp-Session-Id"].partition(".")[2]
    with stack.redis_client("redis") as admin:
        stored = json.loads(admin.hget(keys.SESSION.format(session_id), "params"))
    assert set(stored) == set(OPENING) and len(json.dumps(stored)) < 1024
