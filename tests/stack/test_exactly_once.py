"""Exactly once per request against real processes (redis-server, three uvicorn instances, nginx), the Redis
store: a client that retries a call with the same id after its instance was killed mid-call, or after Redis
stalled under its write, gets one answer and every write applied once; a retry relayed to the owner, or sent
after the owner drained, gets the recorded answer; a relayed call whose owner died is taken over and run once,
and one whose relay died runs again for its repeat;
nginx sends a session's call whose instance died before answering to the next instance by itself; and a late
answer to an elicitation the dead owner asked approves nothing the new owner asks."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable

import pytest
import requests

from loadtest.client.legacy import Exchange, McpClient
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import INSTANCES
from mcp_cluster.sessions.once import IN_PROGRESS_WAIT_SECONDS
from mcp_cluster.sessions.server_requests import IDS_PER_GENERATION
from mcp_cluster.shared import keys
from mcp_cluster.shared.runs import MAY_HAVE_RUN
from tests.utils.clients import session, wait_for

WAIT = {"wait_seconds": 5}  # the call's wait between its writes, in which the tests strike
YES = {"action": "accept", "content": {"confirm": True}}


@pytest.fixture(scope="module")
def writer(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("writer")
    options = {"preset": "stateful-json", "policy": "session", "store": "redis", "server": "tests.servers.writer"}
    settings = {"MCP_ACCESS_LOG": "on", "MCP_REDIS_RIDE_THROUGH": "1"}  # a Redis stall past it fails the call
    with Stack(run_dir=run_dir, port=free_port(), app_env=settings, **options) as stack:
        yield stack


@pytest.fixture(scope="module")
def writer_sse(tmp_path_factory):
    options = {"preset": "stateful-sse", "policy": "session", "store": "redis", "server": "tests.servers.writer"}
    with Stack(run_dir=tmp_path_factory.mktemp("writer-sse"), port=free_port(), **options) as stack:
        yield stack


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with Stack(
        run_dir=tmp_path_factory.mktemp("demo"), preset="stateful-sse", store="redis", port=free_port()
    ) as stack:
        yield stack


def counter(stack: Stack, client: McpClient, name: str) -> int:
    """A session's counter as Redis holds it (0 before its first write)."""
    record = keys.SESSION.format(client.session_id.partition(".")[2])
    with stack.redis_client("redis") as admin:
        return int(json.loads(admin.hget(record, f"s:{name}") or "0"))


def in_thread(call: Callable[[], Exchange]) -> tuple[threading.Thread, list]:
    """Run `call` in a thread; the list gets its exchange, or the exception it raised."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(call())
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def written(exchange: Exchange) -> dict:
    assert exchange.status == 200 and exchange.result and not exchange.result.get("isError"), exchange.messages
    return exchange.result["structuredContent"]


def test_a_call_retried_after_its_instance_was_killed_mid_call_writes_once(writer):
    """app1 dies between the call's two writes; the client's retry (same id, another instance) takes the
    session over and runs the call again: its first write answers as before, its second is made once."""
    client = session(writer.instance_url("app1"))
    thread, outcome = in_thread(lambda: client.call_tool("write_wait_write", WAIT, request_id=7))
    wait_for(lambda: counter(writer, client, "before") == 1)
    writer.restart("app1", signal.SIGKILL)
    thread.join(timeout=30)
    assert isinstance(outcome[0], requests.RequestException), outcome  # no answer: it may have run
    client.url = writer.instance_url("app2")
    retried = written(client.call_tool("write_wait_write", {"wait_seconds": 5}, request_id=7))
    assert (retried["before"], retried["after"]) == (1, 1)
    again = client.call_tool("write_wait_write", WAIT, request_id=7)  # and once more: the recorded answer
    assert written(again) == retried
    assert (counter(writer, client, "before"), counter(writer, client, "after")) == (1, 1)
    assert written(client.call_tool("write_wait_write"))["before"] == 2  # the next call counts on


def test_a_call_retried_after_redis_stalled_under_its_write_writes_once(writer):
    """Redis stops (SIGSTOP) past the write's ride-through (1 s here) while the call's second write is on its
    way: the call answers that it may have run and that a retry with its id is safe; the retry finds both writes
    made once."""
    client = session(writer.instance_url("app2"))
    thread, outcome = in_thread(lambda: client.call_tool("write_wait_write", {"wait_seconds": 1}, request_id=3))
    wait_for(lambda: counter(writer, client, "before") == 1)
    writer.pause("redis", 3.5)  # the write's two tries time out (1 s each); Redis runs what it had queued after
    thread.join(timeout=30)
    (failed,) = outcome
    assert failed.result["isError"] and failed.result["content"][0]["text"].endswith(MAY_HAVE_RUN), failed.messages
    retried = written(client.call_tool("write_wait_write", {"wait_seconds": 1}, request_id=3))
    assert (retried["before"], retried["after"]) == (1, 1)
    assert (counter(writer, client, "before"), counter(writer, client, "after")) == (1, 1)


def test_nginx_sends_a_call_whose_instance_died_before_answering_to_the_next_one(writer):
    """Through nginx (session policy), the session's instance dies mid-call before any byte of the answer: nginx
    sends the call to a backup, which takes the session over and runs it once; the client sees one answer."""
    client = session(writer.url)
    owner = client.session_id.partition(".")[0]
    thread, outcome = in_thread(lambda: client.call_tool("write_wait_write", WAIT, request_id=5))
    wait_for(lambda: counter(writer, client, "before") == 1)
    writer.restart(owner, signal.SIGKILL)
    thread.join(timeout=30)
    (answered,) = outcome
    assert (written(answered)["before"], written(answered)["after"]) == (1, 1)
    assert answered.instance != owner  # answered by the backup nginx moved on to
    assert (counter(writer, client, "before"), counter(writer, client, "after")) == (1, 1)
    resent = [line for line in writer.log_tail("nginx", 40).splitlines() if '"POST /mcp' in line and ", " in line]
    assert resent, "nginx's log shows no request sent to two instances"


def test_a_retry_relayed_to_the_owner_and_one_after_the_owner_drained_get_the_recorded_answer(writer):
    """The same id sent again to an instance that does not hold the session (it relays the call to the owner),
    then after the owner drained (SIGTERM) and handed the session over: the recorded answer each time, and the
    call does not run again; the same id with other params is refused, relayed too."""
    client = session(writer.instance_url("app3"))
    first = written(client.call_tool("write_wait_write", request_id=21))
    client.url = writer.instance_url("app1")
    assert written(client.call_tool("write_wait_write", request_id=21)) == first  # relayed to app3
    reused = client.call_tool("write_wait_write", {"wait_seconds": 1}, request_id=21)
    assert reused.status == 422 and "did not run: retry with a new id" in reused.error["message"]
    writer.restart("app3", signal.SIGTERM)
    assert written(client.call_tool("write_wait_write", request_id=21)) == first  # app1 holds it now
    assert (counter(writer, client, "before"), counter(writer, client, "after")) == (1, 1)


def test_a_relayed_call_whose_owner_died_and_started_again_is_taken_over_and_runs_once(writer):
    """app2 relays the call to the session's owner app1, which dies between the call's writes and is started
    again at its address (a new process) before app2 sees its answer break off: app2 waits for the dead
    process's heartbeat to lapse, takes the session over and runs the call, its writes made once."""
    client = session(writer.instance_url("app1"))
    client.url = writer.instance_url("app2")
    thread, outcome = in_thread(lambda: client.call_tool("write_wait_write", WAIT, request_id=9))
    wait_for(lambda: counter(writer, client, "before") == 1)
    with writer.paused("app2"):  # its relay reads the broken answer once app1 listens again
        writer.restart("app1", signal.SIGKILL)
    thread.join(timeout=30)
    (answered,) = outcome
    assert (written(answered)["before"], written(answered)["after"]) == (1, 1)
    assert answered.instance == "app2"
    assert (counter(writer, client, "before"), counter(writer, client, "after")) == (1, 1)


def test_a_late_answer_to_the_dead_owners_elicitation_approves_nothing_the_new_owner_asks(demo):
    """The issue's scenario: app1 asks to confirm "delete all files" and dies while the user reads the question;
    app2 takes the session over and asks to confirm a transfer. The user's late "yes" to the first question is
    refused and resolves nothing; the transfer, declined, is not done; the first call, retried with its id,
    asks again and is confirmed."""
    client = session(demo.instance_url("app1"))
    asked, release = [], threading.Event()

    def late_yes(question: dict) -> dict:
        asked.append(question)
        release.wait(timeout=60)
        return {"action": "accept", "content": {"confirm": True}}

    first = {"action": "delete all files"}
    thread, outcome = in_thread(lambda: client.call_tool("confirm_action", first, answer=late_yes, request_id=2))
    wait_for(lambda: asked)
    demo.restart("app1", signal.SIGKILL)

    other = McpClient(requests.Session(), demo.instance_url("app2"), first_id=100)  # the same session, elsewhere
    other.session_id, other.protocol_version = client.session_id, client.protocol_version
    late: list[Exchange] = []

    def answer_late_then_decline(question: dict) -> dict:
        assert question["id"] > IDS_PER_GENERATION  # the new owner's ids: no earlier generation's
        late.append(other.respond(asked[0]["id"], {"action": "accept", "content": {"confirm": True}}))
        return {"action": "decline"}

    transfer = other.call_tool(
        "confirm_action", {"action": "transfer $100 to mallory"}, answer=answer_late_then_decline
    )
    assert transfer.result["content"][0]["text"] == "declined: transfer $100 to mallory", transfer.messages
    (refused,) = late
    assert refused.status == 400
    assert refused.error["message"].startswith(
        f"this session is not waiting for an answer to server request {asked[0]['id']}:"
    )

    release.set()  # the first call's own late answer goes too, and is refused as well
    thread.join(timeout=30)
    (lost,) = outcome
    assert not isinstance(lost, Exchange) or lost.rejected_answer is not None or lost.result is None, lost
    retried = other.call_tool(
        "confirm_action", first, answer=lambda q: {"action": "accept", "content": {"confirm": True}}, request_id=2
    )
    assert retried.result["content"][0]["text"] == "confirmed: delete all files", retried.messages
    audit = "".join((demo.run_dir / f"{name}.log").read_text() for name in INSTANCES)
    assert "mallory" not in "".join(line for line in audit.splitlines() if "action confirmed" in line)
    assert audit.count('"msg": "action confirmed", "action": "delete all files"') == 1


class Left(Exception):
    """The client leaves: its connection closes while the call waits for the user's answer."""


def test_a_call_whose_client_left_while_it_waited_for_the_user_asks_again_when_sent_again(demo):
    """The first run would wait forever for an answer no one will send: its repeat (same id) stops it and runs
    the call again, asking again at once; the action is confirmed once."""
    client = session(demo.instance_url("app2"))

    def leave(question: dict) -> dict:
        raise Left

    action = {"action": "archive the logs"}
    with pytest.raises(Left):
        client.call_tool("confirm_action", action, answer=leave, request_id=4)
    started = time.monotonic()
    again = client.call_tool("confirm_action", action, answer=lambda q: YES, request_id=4)
    assert time.monotonic() - started < IN_PROGRESS_WAIT_SECONDS  # not held behind the first run
    assert again.result["content"][0]["text"] == "confirmed: archive the logs", again.messages
    audit = "".join((demo.run_dir / f"{name}.log").read_text() for name in INSTANCES)
    assert audit.count('"msg": "action confirmed", "action": "archive the logs"') == 1


def test_a_call_whose_relay_died_is_answered_when_sent_again_and_writes_once(writer_sse):
    """app2 relays a call to the session's owner app1 and is SIGKILLed mid-call (as nginx re-sends then, the
    client sends it again with its id, through app3): app1 stops the run the dead relay left and runs the call
    for the repeat, its first write answering as before; one answer, every write made once."""
    client = session(writer_sse.instance_url("app1"))
    client.url = writer_sse.instance_url("app2")
    thread, outcome = in_thread(lambda: client.call_tool("write_wait_write", WAIT, request_id=12))
    wait_for(lambda: counter(writer_sse, client, "before") == 1)
    writer_sse.restart("app2", signal.SIGKILL)
    thread.join(timeout=30)
    (broken,) = outcome
    assert isinstance(broken, requests.RequestException) or broken.result is None, broken  # its answer was lost
    client.url = writer_sse.instance_url("app3")
    again = client.call_tool("write_wait_write", WAIT, request_id=12)
    assert (written(again)["before"], written(again)["after"]) == (1, 1)
    assert (counter(writer_sse, client, "before"), counter(writer_sse, client, "after")) == (1, 1)
