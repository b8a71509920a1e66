"""The Redis session store: every stateful capability through plain round-robin, and sessions that outlive
the instance holding them. Real redis-server, real uvicorn instances, real nginx."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import signal
import time
from urllib.parse import urlsplit

import pytest
import redis
import requests

from loadtest.client import capabilities as cap
from loadtest.client.legacy import McpClient, stream_messages
from loadtest.harness.topology import INSTANCES
from mcp_cluster.cluster.forward_listener import CLIENTS_ELSEWHERE
from mcp_cluster.cluster.router import FORWARDED_ELSEWHERE
from mcp_cluster.shared import keys
from tests.utils.clients import Recorder, every_operation, operations, session, wait_for

pytestmark = pytest.mark.anyio
NOT_FOUND = {"code": -32600, "message": "Session not found"}


@pytest.fixture
def shared(stack_for):
    """stateful-sse with the Redis store behind round-robin."""
    return stack_for("stateful-sse", "round-robin", "redis")


def test_every_capability_works_through_round_robin(shared):
    outcomes = every_operation(shared.url)
    assert {name: o.failure for name, o in outcomes.items()} == dict.fromkeys(outcomes)
    assert {o.instance for o in outcomes.values()} == set(INSTANCES), "round-robin should reach every instance"


def test_json_responses_carry_what_they_can_through_round_robin(stack_for):
    client = session(stack_for("stateful-json", "round-robin", "redis").url)
    try:
        assert [cap.counter(client, expected=n).failure for n in (1, 2, 3, 4)] == [None] * 4
        assert cap.basic_tool(client).failure is None
        assert cap.subscribe(client, "json").failure is None
        # A JSON body holds only the response: no back-channel, with or without the store.
        assert cap.sampling(client).failure.startswith("JSON-RPC -32600: Cannot send 'sampling/createMessage'")
    finally:
        assert client.close().status == 200


async def test_the_sdk_client_gets_logs_progress_sampling_and_elicitation(shared):
    recorder = Recorder()
    async with recorder.client(shared.url) as client:
        slow = await client.call_tool(
            "slow_task", {"steps": 3, "step_seconds": 0.01}, progress_callback=recorder.on_progress
        )
        sampled = await client.call_tool("analyze_with_ai", {"text": "three instances"})
        confirmed = await client.call_tool("confirm_action", {"action": "scale out"})
        counts = [(await client.call_tool("increment")).structured_content["result"] for _ in range(6)]
    assert slow.content[0].text == "done: 3 steps"
    assert recorder.logs == ["step 1/3", "step 2/3", "step 3/3"]
    assert recorder.progress == [1, 2, 3]
    assert sampled.content[0].text == "analysis: a short analysis"
    assert confirmed.content[0].text == "confirmed: scale out"
    assert counts == [1, 2, 3, 4, 5, 6]


def test_concurrent_sessions_count_exactly(shared):
    def count(_: int) -> list[int]:
        client = session(shared.url)
        try:
            return [client.call_tool("increment").result["structuredContent"]["result"] for _ in range(25)]
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        sequences = list(pool.map(count, range(8)))
    assert sequences == [list(range(1, 26))] * 8


def test_an_update_reaches_the_get_stream_through_another_instance(shared):
    subscriber = session(shared.url)
    subscriber.timeout = (5, 5)  # a missing notification fails the test with a read timeout
    try:
        assert cap.subscribe(subscriber, "via-forwarding").failure is None
        with subscriber.open_stream() as stream:
            assert stream.status_code == 200
            notifications = (m for m in stream_messages(stream) if "method" in m)
            for n in range(3):  # each publish reaches a different instance first
                assert cap.publish(subscriber, "via-forwarding", f"v{n}").failure is None
                update = next(notifications)
                assert update["params"]["uri"] == "updates://via-forwarding"
    finally:
        subscriber.close()


def test_an_update_published_on_one_instance_reaches_subscribers_held_by_another(shared):
    subscriber = session(shared.instance_url("app2"))
    publisher = session(shared.instance_url("app3"))
    subscriber.timeout = (5, 5)
    try:
        assert cap.subscribe(subscriber, "across").failure is None
        with subscriber.open_stream() as stream:
            assert stream.status_code == 200
            assert cap.publish(publisher, "across", "from app3").failure is None
            update = next(m for m in stream_messages(stream) if "method" in m)
        assert update["params"]["uri"] == "updates://across"
    finally:
        subscriber.close()
        publisher.close()


def test_delete_ends_the_session_on_every_instance(shared):
    client = session(shared.url)
    assert client.close().status == 200
    for name in INSTANCES:
        direct = McpClient(requests.Session(), shared.instance_url(name))
        direct.session_id, direct.protocol_version = client.session_id, client.protocol_version
        answer = direct.call_tool("whoami")
        assert (answer.status, answer.error) == (404, NOT_FOUND), name


def test_a_forged_forwarding_header_is_refused_and_nothing_runs(shared):
    client = session(shared.url)
    try:
        assert cap.counter(client, expected=1).failure is None
        call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "increment"}}
        forged = client.headers({"X-Mcp-Forwarded": "1700000000;app9:0;00ff"})
        on_public_port = requests.post(shared.instance_url("app2"), json=call, headers=forged, timeout=5)
        assert on_public_port.status_code == 403
        assert on_public_port.json()["error"]["message"] == FORWARDED_ELSEWHERE
        on_forwarding_port = requests.post(shared.forwarding_url("app2"), json=call, headers=forged, timeout=5)
        assert on_forwarding_port.status_code == 403
        assert (
            on_forwarding_port.json()["error"]["message"]
            == "invalid x-mcp-forwarded header; only cluster instances may send it, once; did not run"
        )
        odd = requests.post(
            shared.forwarding_url("app2"),
            data=b"{}",
            headers=client.headers({"X-Mcp-Forwarded": "\u00b2;a;\u00e9"}),
        )
        assert odd.status_code == 403
        assert cap.counter(client, expected=2).failure is None, "the forged calls must not have counted"
    finally:
        client.close()


def test_through_a_balancer_that_relays_a_client_cannot_ask_for_the_owners_name(shared):
    """nginx sets X-Mcp-Owner-Redirect itself: on round-robin it is empty, so every request is relayed."""
    client = session(shared.url)
    client.http.headers["X-Mcp-Owner-Redirect"] = "on"
    answered = [client.call_tool("whoami") for _ in range(6)]
    assert [exchange.status for exchange in answered] == [200] * 6
    assert any("x-mcp-served-by" in exchange.headers for exchange in answered), "round-robin reached no other instance"


def test_the_forwarding_port_serves_no_client(shared):
    client = session(shared.url)
    try:
        mcp, ping = shared.forwarding_url("app1"), {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        modern = {"Mcp-Protocol-Version": "2026-07-28", "X-Mcp-Forwarded": "1;a;b"}  # a kind never forwarded
        for url, headers in (
            (mcp, client.headers()),
            (mcp.replace("/mcp", "/healthz"), client.headers()),
            (mcp, {**client.headers(), **modern}),
        ):
            answer = requests.post(url, json=ping, headers=headers, timeout=5)
            assert answer.status_code == 403, (url, headers)
            assert answer.json()["error"]["message"] == CLIENTS_ELSEWHERE
        assert cap.counter(client, expected=1).failure is None  # the instance serves its clients on
    finally:
        client.close()


def test_a_signed_hop_cannot_carry_another_request(shared):
    """Even with the secret's signature captured from a real hop, changing the body breaks it, only the
    forwarding port of the process it was signed for takes it (another answers that nothing ran), once."""
    from mcp_cluster.cluster.forwarding import ForwardSigner

    secret = bytes.fromhex(redis.Redis.from_url(shared.redis_url).get(keys.CLUSTER_SECRET).decode())
    client = session(shared.instance_url("app1"))
    try:
        owner = client.call_tool("whoami").result["structuredContent"]["instance"]
        signed = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
        swapped = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"increment","arguments":{}}}'
        url, headers = shared.forwarding_url(owner), client.headers()
        # What the owner's router sees: the headers as sent, the session id without its instance prefix.
        sent = requests.Request("POST", url, data=signed, headers=headers).prepare().headers
        seen = {**{k.lower(): v for k, v in sent.items()}, "host": urlsplit(url).netloc}
        seen["mcp-session-id"] = client.session_id.partition(".")[2]
        scope = {"method": "POST", "path": "/mcp", "headers": [(k.encode(), v.encode()) for k, v in seen.items()]}
        record = keys.SESSION.format(seen["mcp-session-id"])
        recipient = redis.Redis.from_url(shared.redis_url).hget(record, "owner").decode()
        headers["X-Mcp-Forwarded"] = ForwardSigner(secret, "test").sign(scope, signed, recipient)
        public = requests.post(shared.instance_url(owner), data=signed, headers=headers, timeout=5)
        as_sent = {**headers, "Host": seen["host"]}  # as if app1's address now led to app2
        elsewhere = requests.post(shared.forwarding_url("app2"), data=signed, headers=as_sent, timeout=5)
        genuine = requests.post(url, data=signed, headers=headers, timeout=5)
        tampered = requests.post(url, data=swapped, headers=headers, timeout=5)
        replayed = requests.post(url, data=signed, headers=headers, timeout=5)
        assert public.status_code == 403 and public.json()["error"]["message"] == FORWARDED_ELSEWHERE
        assert elsewhere.status_code == 503 and elsewhere.headers["x-mcp-handed-over"] == "replaced", elsewhere.text
        assert genuine.status_code == 200 and '"instance":"app1"' in genuine.text
        assert tampered.status_code == 403
        assert replayed.status_code == 403 and "once" in replayed.json()["error"]["message"]
        assert cap.counter(client, expected=1).failure is None, "the tampered call must not have run"
    finally:
        client.close()


def test_an_ended_session_left_in_redis_is_not_revived(shared):
    """A record that outlived its session (its deletion failed during a Redis blip) answers 404 and goes."""
    store = redis.Redis.from_url(shared.redis_url)
    client = session(shared.instance_url("app1"))
    key = keys.SESSION.format(client.session_id.partition(".")[2])
    record = store.hgetall(key)
    assert client.close().status == 200
    wait_for(lambda: not store.exists(key))
    store.hset(key, mapping=record)  # as if the owner's delete had not reached Redis
    store.expire(key, 60)
    client.url = shared.instance_url("app2")
    assert (client.call_tool("whoami").status, store.exists(key)) == (404, 0)


def test_invalid_initialize_params_get_the_sdks_answer(shared):
    answer = requests.post(
        shared.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
        timeout=5,
    )
    assert answer.status_code == 200
    assert '"error":{"code":-32602,"message":"Invalid request parameters"' in answer.text


def test_a_resource_reads_the_same_on_every_instance(shared):
    publisher = session(shared.instance_url("app3"))
    reader = session(shared.instance_url("app1"))
    try:
        published = publisher.call_tool("publish_update", {"message": "shared text", "topic": "same"})
        version = published.result["structuredContent"]["version"]
        read = reader.request("resources/read", {"uri": "updates://same"})
        assert read.result["contents"][0]["text"] == f"v{version}: shared text"
    finally:
        publisher.close()
        reader.close()


def test_the_instances_agree_on_a_new_secret_after_redis_lost_its_data(tmp_path):
    from loadtest.harness.stack import Stack, free_port

    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port()) as stack:
        store = redis.Redis.from_url(stack.redis_url)
        before = store.get(keys.CLUSTER_SECRET)
        store.flushall()  # a Redis restart without persistence: every session and the secret are gone
        client = session(stack.instance_url("app1"))  # app1 makes a new secret; the others follow within seconds
        client.url = stack.instance_url("app2")
        wait_for(lambda: client.call_tool("whoami").status == 200, timeout=15)
        assert store.get(keys.CLUSTER_SECRET) != before


def test_sessions_survive_their_instance_being_killed(stack_for, tmp_path):
    """SIGKILL the instance that owns a session: the next calls take it over and the count goes on."""
    from loadtest.harness.stack import Stack, free_port

    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port()) as stack:
        clients = [session(stack.url) for _ in range(6)]
        owners = {}
        for client in clients:
            assert cap.counter(client, expected=1).failure is None
            owners[client.session_id] = client.call_tool("whoami").result["structuredContent"]["instance"]
        victim = next(iter(owners.values()))
        os.kill(stack.proc(victim).pid, signal.SIGKILL)
        wait_for(lambda: not stack.proc(victim).alive())
        for client in clients:
            assert cap.counter(client, expected=2).failure is None  # nginx and the instances take each over
            assert cap.sampling(client).failure is None
        assert {c.call_tool("whoami").result["structuredContent"]["instance"] for c in clients} <= set(INSTANCES) - {
            victim
        }


def test_with_the_session_policy_nginx_sends_a_taken_over_session_to_its_owner_and_nothing_is_relayed(stack_for):
    """The old owner is back after its session was taken over, and nginx sends it the session's requests by
    their id: it names the new owner (421 + X-Accel-Redirect) and nginx re-sends each request there with its
    method, body and headers, POST answers and the GET stream streaming through; no instance relays one."""
    stack = stack_for("stateful-sse", "session", "redis")
    client = session(stack.url)
    client.timeout = (5, 10)
    minted_by = client.session_id.partition(".")[0]
    os.kill(stack.proc(minted_by).pid, signal.SIGKILL)
    wait_for(lambda: not stack.proc(minted_by).alive())
    owner = client.call_tool("whoami").instance  # nginx's backup instance took the session over
    assert owner in set(INSTANCES) - {minted_by}
    stack.restart(minted_by)
    subscriber = stack.instance_url(owner)
    for exchange in (
        client.call_tool("whoami"),
        client.call_tool("slow_task", {"steps": 3, "step_seconds": 0.01}, progress=True),
    ):
        assert exchange.status == 200 and exchange.instance == owner, exchange
        assert "x-mcp-served-by" not in exchange.headers, "an instance relayed the request"
    outcomes = operations(client)
    assert all(outcome.failure is None for outcome in outcomes.values()), outcomes
    with client.open_stream() as stream:
        assert stream.status_code == 200 and stream.headers["x-mcp-instance"] == owner
        publisher = session(subscriber)
        assert cap.publish(publisher, "capabilities", "through nginx's hop").failure is None
        update = next(m for m in stream_messages(stream) if "method" in m)
    assert update["params"]["uri"] == "updates://capabilities"
    assert client.close().status == 200
    log = (stack.run_dir / "nginx.log").read_text().splitlines()
    hops = [line for line in log if "upstream_status=421 : " in line]
    assert len(hops) >= 10, stack.log_tail("nginx")  # every request above reached the old owner first
    assert all(line.rpartition(" : ")[2] in ("200", "202") for line in hops), hops  # answered by the owner


def test_nginx_sends_a_request_only_to_an_owner_that_is_one_of_its_instances(stack_for):
    """Redis names an owner nginx does not know (poisoned): the instance names it, and nginx answers 502 as
    JSON-RPC rather than send the request anywhere else."""
    stack = stack_for("stateful-sse", "session", "redis")
    client = session(stack.url)
    store = redis.Redis.from_url(stack.redis_url)
    store.hset(keys.SESSION.format(client.session_id.partition(".")[2]), "owner", "app9:00000000")
    store.set(keys.OWNER.format("app9:00000000"), stack.instance_url("app2").removesuffix("/mcp"), ex=60)
    answered = wait_for(lambda: (e := client.call_tool("whoami")).status == 502 and e, timeout=5)
    assert answered.error["message"].startswith("No MCP instance answered"), answered.messages
    last = (stack.run_dir / "nginx.log").read_text().splitlines()[-1]
    assert last.endswith("upstream_status=421") and " : " not in last, last  # the one instance, nothing after


def test_an_owner_paused_past_its_heartbeat_lets_the_session_go_as_soon_as_it_resumes(tmp_path):
    """SIGSTOP the owner for longer than its heartbeat timeout: the session is taken over on that evidence
    alone, and when the owner resumes it drops its copy and closes the GET stream it held at once (its sweep
    would come 10 minutes later), then relays the session's requests to the new owner."""
    from loadtest.harness.stack import Stack, free_port

    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port()) as stack:
        store = redis.Redis.from_url(stack.redis_url)
        client = session(stack.instance_url("app1"))
        assert cap.counter(client, expected=1).failure is None
        record = keys.SESSION.format(client.session_id.partition(".")[2])
        heartbeat = keys.OWNER.format(store.hget(record, "owner").decode())
        other = McpClient(requests.Session(), stack.instance_url("app2"), timeout=(5, 10))
        other.session_id, other.protocol_version = client.session_id, client.protocol_version
        paused = stack.proc("app1").pid
        with client.open_stream(read_timeout=5) as stream:
            os.kill(paused, signal.SIGSTOP)
            try:
                wait_for(lambda: not store.exists(heartbeat), timeout=10)
                assert cap.counter(other, expected=2).failure is None  # taken over, nothing forwarded
            finally:
                os.kill(paused, signal.SIGCONT)
            deadline = time.monotonic() + 5
            for _ in stream.iter_lines():  # ends when app1 closes it; a read timeout fails the test
                assert time.monotonic() < deadline, "the resumed owner kept the GET stream open"
        assert store.hget(record, "owner").decode().startswith("app2:")
        assert cap.counter(client, expected=3).failure is None  # app1 now relays to app2


def test_a_subscription_survives_the_takeover(tmp_path):
    from loadtest.harness.stack import Stack, free_port

    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port()) as stack:
        subscriber = session(stack.instance_url("app1"))
        subscriber.timeout = (5, 5)
        assert cap.subscribe(subscriber, "kept").failure is None
        os.kill(stack.proc("app1").pid, signal.SIGKILL)
        wait_for(lambda: not stack.proc("app1").alive())
        subscriber.url = stack.url  # the balancer now sends it to app2 or app3, which take the session over
        with subscriber.open_stream() as stream:
            assert stream.status_code == 200
            publisher = session(stack.instance_url("app3"))
            assert cap.publish(publisher, "kept", "after the takeover").failure is None
            update = next(m for m in stream_messages(stream) if "method" in m)
        assert update["params"]["uri"] == "updates://kept"


def test_idle_sessions_expire_everywhere_and_leave_nothing_in_redis(tmp_path):
    from loadtest.harness.stack import Stack, free_port

    settings = {"MCP_SESSION_IDLE_TIMEOUT": "1"}
    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port(), app_env=settings) as stack:
        store = redis.Redis.from_url(stack.redis_url)
        client = session(stack.url)
        key = keys.SESSION.format(client.session_id.partition(".")[2])
        assert store.exists(key)
        wait_for(lambda: not store.exists(key), timeout=10)  # the owner reaped it and deleted its record
        for name in INSTANCES:
            direct = McpClient(requests.Session(), stack.instance_url(name))
            direct.session_id, direct.protocol_version = client.session_id, client.protocol_version
            assert (direct.call_tool("whoami").status, name) == (404, name)


def test_a_session_record_is_small_and_churn_leaves_no_keys(shared):
    store = redis.Redis.from_url(shared.redis_url)
    client = session(shared.url)
    for n in range(1, 101):
        assert cap.counter(client, expected=n).failure is None
    key = keys.SESSION.format(client.session_id.partition(".")[2])
    assert store.memory_usage(key) < 1024, "one session record (with a counter at 100) should stay under 1 KiB"
    assert store.pttl(key) > 0, "every record expires"
    client.close()
    churned = []
    for _ in range(30):
        other = session(shared.url)
        churned.append(keys.SESSION.format(other.session_id.partition(".")[2]))
        assert other.close().status == 200
    wait_for(lambda: store.exists(key, *churned) == 0)  # each owner deletes the record as the session ends


def test_a_dropped_get_stream_resumes_with_last_event_id_elsewhere_even_after_a_takeover(tmp_path):
    from loadtest.harness.stack import Stack, free_port

    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port()) as stack:
        store = redis.Redis.from_url(stack.redis_url)
        subscriber = session(stack.instance_url("app1"))  # app1 owns the session
        publisher = session(stack.instance_url("app2"))
        events_key = keys.EVENTS.format(subscriber.session_id.partition(".")[2])
        assert cap.subscribe(subscriber, "resume").failure is None
        subscriber.url, subscriber.timeout = stack.instance_url("app2"), (5, 5)
        with subscriber.open_stream() as stream:  # held through app2, which forwards it to app1
            assert cap.publish(publisher, "resume", "seen").failure is None
            last_seen, _ = next(sse_events(stream))
        for text in ("missed 1", "missed 2"):  # while no stream is open
            assert cap.publish(publisher, "resume", text).failure is None
        wait_for(lambda: store.xlen(events_key) >= 3)  # seen, missed 1, missed 2
        os.kill(stack.proc("app1").pid, signal.SIGKILL)
        wait_for(lambda: not stack.proc("app1").alive())
        subscriber.url = stack.instance_url("app3")  # takes the session over and replays from Redis
        with subscriber.http.get(
            subscriber.url,
            headers=subscriber.headers({"Accept": "text/event-stream", "Last-Event-ID": last_seen}),
            stream=True,
            timeout=(5, 5),
        ) as resumed:
            assert resumed.status_code == 200
            events = sse_events(resumed)
            replayed = [next(events) for _ in range(2)]
        assert [message["params"]["uri"] for _, message in replayed] == ["updates://resume"] * 2
        assert all(event_id > last_seen for event_id, _ in replayed)


def sse_events(resp):
    """(id, message) of each SSE event that carries a JSON-RPC message."""
    event_id, data = None, []
    for line in resp.iter_lines():
        line = line.decode()
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line:
            if data and "".join(data):
                yield event_id, json.loads("".join(data))
            event_id, data = None, []


def test_several_workers_per_instance_share_sessions_through_redis(tmp_path):
    """MCP_WORKERS=2: each worker has its own session table, like separate containers; with the Redis
    store a request that the kernel hands to the other worker is forwarded to the session's owner, on the
    forwarding port that worker took of the two from MCP_FORWARD_PORT."""
    from loadtest.harness.stack import Stack, free_port

    settings = {"MCP_WORKERS": "2"}
    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port(), app_env=settings) as stack:
        url = stack.instance_url("app1")
        by_owner: dict[int, McpClient] = {}

        def opened_on_both_workers() -> bool:  # the kernel picks a worker per new connection, not always evenly
            client = session(url)  # and the second worker may still be starting when the first is ready
            by_owner.setdefault(client.call_tool("whoami").result["structuredContent"]["pid"], client)
            return len(by_owner) == 2

        wait_for(opened_on_both_workers, timeout=20)
        forwarded = 0
        for client in by_owner.values():
            for n in range(1, 41):
                client.http = requests.Session()  # a new connection: the kernel picks either worker
                answer = client.call_tool("increment")
                assert answer.result["structuredContent"]["result"] == n
                forwarded += "X-Mcp-Served-By" in answer.headers  # only on a response relayed from the owner
                assert cap.sampling(client).failure is None
            client.close()
        assert forwarded > 0, "some calls should have reached the worker that does not own their session"
        first = stack.forward_ports["app1"]
        for port in (first, first + 1):  # one per worker, both forwarded-only
            refused = requests.post(f"http://127.0.0.1:{port}/mcp", json={}, timeout=5)
            assert refused.status_code == 403 and refused.json()["error"]["message"] == CLIENTS_ELSEWHERE


def test_concurrent_requests_for_a_dead_owners_session_take_it_over_once(tmp_path):
    """Several requests of one session reach the same instance right after its owner died: one claims and
    rebuilds the session, the others wait for the rebuild instead of taking the half-built session for gone."""
    from loadtest.harness.stack import Stack, free_port

    with Stack(run_dir=tmp_path, preset="stateful-sse", store="redis", port=free_port()) as stack:
        client = session(stack.instance_url("app1"))
        assert cap.counter(client, expected=1).failure is None
        os.kill(stack.proc("app1").pid, signal.SIGKILL)
        wait_for(lambda: not stack.proc("app1").alive())

        def increment(n: int) -> int | None:
            other = McpClient(requests.Session(), stack.instance_url("app2"))
            other.session_id, other.protocol_version = client.session_id, client.protocol_version
            other._ids = itertools.count(100 * (n + 1))  # one session: request ids must differ
            answer = other.call_tool("increment")
            return answer.result["structuredContent"]["result"] if answer.status == 200 and answer.result else None

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            counted = sorted(pool.map(increment, range(6)), key=lambda value: value or 0)
        assert counted == [2, 3, 4, 5, 6, 7]
