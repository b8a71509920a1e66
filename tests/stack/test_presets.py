"""Each preset on one instance, with a 2025-11-25 client: what works, and exactly how the rest fails."""

from __future__ import annotations

import pytest
import requests
from mcp.shared.exceptions import MCPError

from loadtest.client.legacy import McpClient, stream_messages
from loadtest.harness.topology import SSE, STATEFUL
from tests.utils.clients import NO_BACK_CHANNEL, SAMPLED_TEXT, Recorder, text_of

pytestmark = pytest.mark.anyio
BULLETIN = "updates://bulletin"


async def test_plain_tool_works_on_every_preset(url):
    async with Recorder().client(url) as client:
        result = await client.call_tool("process_file", {"path": "poem.txt", "operation": "count-lines"})
    assert not result.is_error
    assert text_of(result) == "3 lines"


async def test_process_file_refuses_paths_outside_the_data_directory(url):
    async with Recorder().client(url) as client:
        for path in ("../app/settings.py", "/etc/passwd", "/etc/no-such-file"):
            result = await client.call_tool("process_file", {"path": path, "operation": "count-lines"})
            assert result.is_error
            refusal = f"no file {path!r} in the data directory; give a path relative to it, like 'poem.txt'"
            assert text_of(result) == f"Error executing tool process_file: {refusal}"  # whether it exists or not
        # the server keeps serving after refusing
        result = await client.call_tool("process_file", {"path": "users.csv", "operation": "count-lines"})
        assert text_of(result) == "4 lines"


async def test_session_counter_counts_per_session_only_on_stateful_presets(url, preset):
    async with Recorder().client(url) as client:
        results = [await client.call_tool("increment") for _ in range(3)]
    if preset in STATEFUL:
        assert [r.structured_content["result"] for r in results] == [1, 2, 3]
    else:
        assert all(r.is_error for r in results)
        assert "this request has none" in text_of(results[0])


async def test_logs_and_progress_arrive_only_on_sse_presets(url, preset):
    recorder = Recorder()
    async with recorder.client(url) as client:
        result = await client.call_tool(
            "slow_task", {"steps": 3, "step_seconds": 0.01}, progress_callback=recorder.on_progress
        )
    assert text_of(result) == "done: 3 steps"
    if preset in SSE:
        assert recorder.logs == ["step 1/3", "step 2/3", "step 3/3"]
        assert recorder.progress == [1, 2, 3]
    else:  # JSON responses have no stream to carry them: dropped without an error
        assert recorder.logs == []
        assert recorder.progress == []


def test_logs_and_progress_on_the_wire(url, preset):
    client = McpClient(requests.Session(), url)
    client.initialize()
    exchange = client.call_tool("slow_task", {"steps": 2, "step_seconds": 0}, progress=True)
    logs = [n["data"] for n in exchange.notifications("notifications/message")]
    progress = [n["progress"] for n in exchange.notifications("notifications/progress")]
    assert exchange.result["content"][0]["text"] == "done: 2 steps"
    if preset in SSE:
        assert exchange.headers["Content-Type"].startswith("text/event-stream")
        assert (logs, progress) == (["step 1/2", "step 2/2"], [1, 2])
    else:
        assert exchange.headers["Content-Type"].startswith("application/json")
        assert (logs, progress) == ([], [])


@pytest.mark.parametrize(
    ("tool", "arguments", "expected", "method"),
    [
        ("analyze_with_ai", {"text": "load balancers"}, f"analysis: {SAMPLED_TEXT}", "sampling/createMessage"),
        ("confirm_action", {"action": "deploy"}, "confirmed: deploy", "elicitation/create"),
    ],
)
async def test_sampling_and_elicitation_work_only_on_stateful_sse(url, preset, tool, arguments, expected, method):
    recorder = Recorder()
    async with recorder.client(url) as client:
        if preset == "stateful-sse":
            result = await client.call_tool(tool, arguments)
            assert text_of(result) == expected
            assert len(recorder.sampling_requests) + len(recorder.elicitation_requests) == 1
            return
        with pytest.raises(MCPError) as failure:
            await client.call_tool(tool, arguments)
    assert failure.value.error.code == -32600
    assert failure.value.error.message == f"Cannot send '{method}': {NO_BACK_CHANNEL}"
    assert recorder.sampling_requests == recorder.elicitation_requests == []


def test_back_channel_failure_on_the_wire_is_http_200_with_a_jsonrpc_error(url, preset):
    client = McpClient(requests.Session(), url)
    client.initialize()
    exchange = client.call_tool("analyze_with_ai", {"text": "x"}, answer=lambda request: {})
    if preset == "stateful-sse":
        assert exchange.answered[0]["method"] == "sampling/createMessage"
        return
    assert exchange.status == 200
    assert exchange.answered == []
    assert exchange.error == {"code": -32600, "message": f"Cannot send 'sampling/createMessage': {NO_BACK_CHANNEL}"}


def test_response_kind_and_session_id_follow_the_preset(url, preset):
    client = McpClient(requests.Session(), url)
    exchange = client.initialize()
    expected = "application/json" if preset.endswith("json") else "text/event-stream"
    assert exchange.headers["Content-Type"].startswith(expected)
    assert (client.session_id is not None) == (preset in STATEFUL)


def test_unknown_missing_and_deleted_sessions(url, preset):
    http = requests.Session()
    stranger = McpClient(http, url)
    stranger.session_id, stranger.protocol_version = "no-such-session", "2025-11-25"
    unknown = stranger.call_tool("whoami")
    anonymous = McpClient(http, url).request("tools/list")
    owner = McpClient(http, url)
    owner.initialize()
    deleted = owner.close()
    after = owner.call_tool("whoami")
    if preset in STATEFUL:
        assert (unknown.status, unknown.error) == (404, {"code": -32600, "message": "Session not found"})
        assert anonymous.status == 400
        assert anonymous.error == {"code": -32600, "message": "Bad Request: Missing session ID"}
        assert deleted.status == 200
        assert (after.status, after.error) == (404, {"code": -32600, "message": "Session not found"})
    else:  # no sessions: the header is ignored and every request is served on its own
        assert unknown.status == 200
        assert unknown.result["structuredContent"]["session_id"] is None
        assert anonymous.status == 200
        assert deleted.status == 405
        assert deleted.error["message"] == "Method Not Allowed: Session termination not supported"
        assert after.status == 200


def test_resource_updates_reach_subscribers_on_their_get_stream(url, preset):
    http = requests.Session()
    subscriber, publisher = McpClient(http, url), McpClient(http, url)
    subscriber.initialize()
    publisher.initialize()
    try:
        subscribed = subscriber.request("resources/subscribe", {"uri": BULLETIN})
        if preset not in STATEFUL:
            assert subscribed.error == {"code": -32601, "message": "Method not found", "data": "resources/subscribe"}
            published = publisher.call_tool("publish_update", {"message": "nobody listens"})
            assert published.result["structuredContent"]["notified_sessions"] == 0
            return
        assert subscribed.result == {}
        subscriber.timeout = (5, 5)  # a missing notification fails the test with a read timeout
        with subscriber.open_stream() as stream:
            assert stream.status_code == 200
            published = publisher.call_tool("publish_update", {"message": "v-next"})
            assert published.result["structuredContent"]["notified_sessions"] == 1
            first = next(m for m in stream_messages(stream) if "method" in m)
        assert (first["method"], first["params"]["uri"]) == ("notifications/resources/updated", BULLETIN), first
        assert set(first["params"]["_meta"]) == {"mcp-scale-lab/update"}  # the event's log id: resumed, it is caught up
        bulletin = subscriber.request("resources/read", {"uri": BULLETIN})
        assert bulletin.result["contents"][0]["text"].endswith(": v-next")
    finally:
        subscriber.close()
        publisher.close()


def test_only_known_resources_can_be_subscribed(stack_for):
    client = McpClient(requests.Session(), stack_for("stateful-json").instance_url("app1"))
    client.initialize()
    refused = client.request("resources/subscribe", {"uri": "file:///etc/passwd"})
    assert refused.error == {
        "code": -32602,
        "message": "cannot subscribe to 'file:///etc/passwd'; did not run: subscribable are updates://<topic>",
    }


def test_updates_reach_only_the_subscribers_of_their_topic(stack_for):
    url = stack_for("stateful-sse").instance_url("app3")
    client = McpClient(requests.Session(), url)
    client.initialize()
    try:
        assert client.request("resources/subscribe", {"uri": "updates://mine"}).result == {}
        other = client.call_tool("publish_update", {"message": "x", "topic": "theirs"})
        mine = client.call_tool("publish_update", {"message": "x", "topic": "mine"})
        assert other.result["structuredContent"]["notified_sessions"] == 0
        assert mine.result["structuredContent"]["notified_sessions"] == 1
        for n in range(2, 9):
            assert client.request("resources/subscribe", {"uri": f"updates://t{n}"}).error is None
        refused = client.request("resources/subscribe", {"uri": "updates://one-too-many"})
        message = "a session may hold 8 subscriptions at most; did not run: unsubscribe from one first"
        assert refused.error == {"code": -32602, "message": message}
    finally:
        client.close()
