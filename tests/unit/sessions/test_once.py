"""Each 2025-11-25 tool call runs once per session and request id, in-process on both stores (the Redis store on
a real redis-server): a repeat gets the first answer, a repeat while the first runs waits for it, the same id with
another request is refused, and a call that ended without an outcome runs again writing nothing twice. Late
answers to the server's own requests are refused. Across processes and faults: tests/stack/test_exactly_once.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Annotated, Any

import anyio
import pytest
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from mcp_cluster import FencingToken, InstanceSettings, Preset, SessionStore, fencing_token, request_key, session_state
from mcp_cluster.instance import Instance
from mcp_cluster.sessions import ledger as ledger_module
from mcp_cluster.sessions import once
from mcp_cluster.sessions.ledger import MemoryLedger, RedisLedger, Verdict
from mcp_cluster.shared import keys
from mcp_cluster.shared.redis import RedisUnavailable, connect
from mcp_cluster.shared.runs import MAY_HAVE_RUN
from tests.utils.asgi import served

pytestmark = pytest.mark.anyio
CLIENT = "address:127.0.0.1"
VERSION = "2025-11-25"
INITIALIZE = {
    "protocolVersion": VERSION,
    "capabilities": {"elicitation": {}},
    "clientInfo": {"name": "t", "version": "1"},
}


class Tools:
    """A server whose calls the tests hold, fail and count."""

    def __init__(self) -> None:
        self.runs: list[str] = []  # a line per run of a tool
        self.release = anyio.Event()  # `held` waits for it
        self.failures = 0  # `flaky` fails this many of its runs after writing
        self.keys: list[str | None] = []
        self.tokens: list[FencingToken | None] = []
        self.mcp = MCPServer("once")

        @self.mcp.tool()
        async def add(ctx: Context, by: int = 1) -> int:
            self.runs.append("add")
            return await session_state(ctx).increment("n", by)

        @self.mcp.tool()
        async def held(ctx: Context) -> int:
            self.runs.append("held")
            value = await session_state(ctx).increment("n")
            await self.release.wait()
            return value

        @self.mcp.tool()
        async def flaky(ctx: Context) -> int:
            self.runs.append("flaky")
            self.keys.append(request_key(ctx))
            self.tokens.append(fencing_token(ctx))
            first = await session_state(ctx).increment("n")
            second = await session_state(ctx).increment("n", 10)
            if self.failures:
                self.failures -= 1
                unavailable = RedisUnavailable(ConnectionError("down"), may_have_run=True)  # a write that timed out
                raise ToolError(str(unavailable))  # as a tool tells its client
            return first * 1000 + second

        @self.mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
        async def peek(ctx: Context) -> int:
            self.runs.append("peek")
            return await session_state(ctx).get("n", 0)

        @self.mcp.tool()
        async def big(ctx: Context, size: Annotated[int, Field(le=200_000)]) -> str:
            self.runs.append("big")
            await session_state(ctx).increment("n")
            return "x" * size


@pytest.fixture(params=["memory", "redis"])
def store(request) -> str:
    return request.param


@asynccontextmanager
async def session_on(tools: Tools, preset: Preset, store: str, request) -> AsyncIterator[tuple[Any, dict]]:
    """(client, session headers): an instance of the preset and store serving `tools`, a session open on it."""
    redis_url = request.getfixturevalue("redis_url") if store == "redis" else None
    settings = InstanceSettings("app1", preset=preset, session_store=SessionStore(store), redis_url=redis_url)
    async with served(Instance(tools.mcp, settings, None).app) as client:
        opened = await client.post("/mcp", json=_request(0, "initialize", INITIALIZE), headers=_accept())
        assert opened.status_code == 200, opened.text
        session = {**_accept(), "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
        await client.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        yield client, session


@pytest.fixture
async def serving(store, request):
    """(tools, client, session headers): a stateful-json instance of the store, a session open on it."""
    tools = Tools()
    async with session_on(tools, Preset.STATEFUL_JSON, store, request) as (client, session):
        yield tools, client, session


async def _post(client, body: dict, headers: dict[str, str]) -> None:
    await client.post("/mcp", json=body, headers=headers)


async def _running(tools: Tools, name: str) -> None:
    """Until the tool's first run has begun (its handler is in), at most 5 s."""
    with anyio.fail_after(5):
        while tools.runs != [name]:
            await anyio.sleep(0.01)


def _accept() -> dict[str, str]:
    return {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _request(request_id, method: str, params: dict) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def _call(request_id, tool: str, **arguments) -> dict:
    return _request(request_id, "tools/call", {"name": tool, "arguments": arguments})


def _value(response) -> int:
    result = response.json()["result"]
    assert not result.get("isError"), result
    return result["structuredContent"]["result"]


async def test_a_repeat_after_the_answer_gets_that_answer_and_runs_nothing(serving):
    tools, client, session = serving
    first = await client.post("/mcp", json=_call(7, "add", by=5), headers=session)
    again = await client.post("/mcp", json=_call(7, "add", by=5), headers=session)
    assert _value(first) == _value(again) == 5
    assert again.json() == first.json()
    assert tools.runs == ["add"]
    peeked = await client.post("/mcp", json=_call(8, "peek"), headers=session)
    assert _value(peeked) == 5  # applied once


async def test_ids_7_and_seven_as_a_string_are_one_request_as_the_sdk_matches_them(serving):
    tools, client, session = serving
    await client.post("/mcp", json=_call(7, "add"), headers=session)
    again = await client.post("/mcp", json=_call("7", "add"), headers=session)
    assert again.json()["id"] == "7" and _value(again) == 1 and tools.runs == ["add"]


async def test_a_progress_token_or_other_meta_may_differ_in_a_repeat(serving):
    tools, client, session = serving
    call = _call(3, "add")
    await client.post("/mcp", json=call, headers=session)
    call["params"]["_meta"] = {"progressToken": "another"}
    assert _value(await client.post("/mcp", json=call, headers=session)) == 1 and tools.runs == ["add"]


async def test_the_same_id_with_another_request_is_refused_and_runs_nothing(serving):
    tools, client, session = serving
    await client.post("/mcp", json=_call(7, "add", by=1), headers=session)
    reused = await client.post("/mcp", json=_call(7, "add", by=2), headers=session)
    assert reused.status_code == 422
    message = reused.json()["error"]["message"]
    assert message.startswith("request id 7 was used in this session for another request") and "did not run" in message
    assert tools.runs == ["add"]


async def test_a_repeat_while_the_first_runs_waits_for_its_answer(serving):
    tools, client, session = serving
    answers = []

    async def call() -> None:
        answers.append(await client.post("/mcp", json=_call(9, "held"), headers=session))

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        await _running(tools, "held")
        group.start_soon(call)
        group.start_soon(call)
        await anyio.sleep(0.2)  # the repeats are in, waiting (none may start a second run meanwhile)
        assert tools.runs == ["held"]
        tools.release.set()
    assert [_value(answer) for answer in answers] == [1, 1, 1]
    assert tools.runs == ["held"]


async def test_a_repeat_with_another_request_while_the_first_runs_is_refused_at_once(serving):
    tools, client, session = serving
    async with anyio.create_task_group() as group:
        group.start_soon(_post, client, _call(9, "held"), session)
        await _running(tools, "held")
        reused = await client.post("/mcp", json=_call(9, "add"), headers=session)
        tools.release.set()
    assert reused.status_code == 422 and tools.runs == ["held"]


async def test_a_run_that_ended_without_an_outcome_runs_again_and_writes_nothing_twice(serving):
    """Its writes were applied, then Redis failed it: the client is told a retry with the same id is safe,
    and the retry's writes answer as the first run's did."""
    tools, client, session = serving
    tools.failures = 1
    failed = (await client.post("/mcp", json=_call(4, "flaky"), headers=session)).json()["result"]
    assert failed["isError"]
    assert failed["content"][0]["text"].endswith("may have run: retry with the same request id, which is safe")
    retried = await client.post("/mcp", json=_call(4, "flaky"), headers=session)
    assert _value(retried) == 1 * 1000 + 11  # the first run's two increments, answered again
    assert tools.runs == ["flaky", "flaky"]
    assert _value(await client.post("/mcp", json=_call(5, "peek"), headers=session)) == 11


async def test_a_read_only_tool_runs_again_on_a_repeat(serving):
    tools, client, session = serving
    await client.post("/mcp", json=_call(1, "peek"), headers=session)
    await client.post("/mcp", json=_call(2, "add"), headers=session)
    assert _value(await client.post("/mcp", json=_call(1, "peek"), headers=session)) == 1
    assert tools.runs == ["peek", "add", "peek"]


async def test_every_run_of_a_call_has_the_same_key_and_other_calls_another(serving):
    tools, client, session = serving
    tools.failures = 1
    for request_id in (1, 1, 2):  # the first run fails after its writes: the repeat runs it again
        await client.post("/mcp", json=_call(request_id, "flaky"), headers=session)
    first, again, other = tools.keys
    assert first == again != other and first.startswith(session["mcp-session-id"].partition(".")[2] + ":")


async def test_a_call_carries_the_fencing_token_of_the_session_it_runs_for(serving):
    tools, client, session = serving
    await client.post("/mcp", json=_call(1, "flaky"), headers=session)
    await client.post("/mcp", json=_call(2, "flaky"), headers=session)
    first, second = tools.tokens
    assert first == second and first.generation == 1 and first.owner.startswith("app1:")  # no takeover between


async def test_an_answer_too_large_to_keep_is_not_run_again(serving):
    tools, client, session = serving
    first = await client.post("/mcp", json=_call(6, "big", size=100_000), headers=session)
    assert len(first.json()["result"]["content"][0]["text"]) == 100_000
    again = (await client.post("/mcp", json=_call(6, "big", size=100_000), headers=session)).json()
    assert again["error"]["message"].endswith(
        "its answer was too large to keep for a repeat, and it does not run again"
    )
    assert tools.runs == ["big"]


async def test_a_repeat_of_an_sse_session_gets_the_answer_as_one_event(store, request):
    tools = Tools()
    async with session_on(tools, Preset.STATEFUL_SSE, store, request) as (client, session):
        first = await client.post("/mcp", json=_call(2, "add"), headers=session)
        again = await client.post("/mcp", json=_call(2, "add"), headers=session)
    assert again.headers["content-type"].startswith("text/event-stream")
    assert again.headers["mcp-session-id"] == session["mcp-session-id"]
    (answer,) = [json.loads(line[5:]) for line in again.text.splitlines() if line.startswith("data:")]
    assert answer == [json.loads(line[5:]) for line in first.text.splitlines() if line.startswith("data: {")][-1]
    assert tools.runs == ["add"]


async def test_an_answer_to_a_server_request_the_session_does_not_wait_for_is_refused(serving):
    _, client, session = serving
    late = {"jsonrpc": "2.0", "id": 1, "result": {"action": "accept", "content": {"confirm": True}}}
    refused = await client.post("/mcp", json=late, headers=session)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith(
        "this session is not waiting for an answer to server request 1"
    )


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_session_keeps_its_newest_records_within_the_bound(backend, request):
    if backend == "memory":
        ledger = MemoryLedger(600, limit=10, max_requests=3)
    else:
        ledger = RedisLedger(connect(request.getfixturevalue("redis_url")), 600, max_requests=3)
    tenure = ("app1:x", 1)
    for number in range(4):
        assert (await ledger.begin("bounded", f"k{number}", "d", tenure, CLIENT)).verdict is Verdict.RUN
        await ledger.finish("bounded", f"k{number}", tenure, b'{"result":%d}' % number, CLIENT)
    assert (await ledger.begin("bounded", "k3", "d", tenure, CLIENT)).answer == b'{"result":3}'
    assert (await ledger.begin("bounded", "k1", "d", tenure, CLIENT)).verdict is Verdict.DONE
    assert (
        await ledger.begin("bounded", "k0", "d", tenure, CLIENT)
    ).verdict is Verdict.RUN  # forgotten: the 4th pushed it out


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_session_keeps_answers_up_to_its_byte_bound_the_oldest_going_first(backend, request):
    size = 60 * 1024  # under the one-answer bound; 17 of them pass the 1 MiB a session keeps
    if backend == "memory":
        ledger = MemoryLedger(600, limit=10)
    else:
        ledger = RedisLedger(connect(request.getfixturevalue("redis_url")), 600)
    tenure = ("app1:x", 1)
    for number in range(18):
        await ledger.begin("heavy", f"k{number}", "d", tenure, CLIENT)
        await ledger.finish("heavy", f"k{number}", tenure, b'"' + b"x" * size + b'"', CLIENT)
    assert (await ledger.begin("heavy", "k17", "d", tenure, CLIENT)).verdict is Verdict.DONE
    assert (await ledger.begin("heavy", "k0", "d", tenure, CLIENT)).verdict is Verdict.RUN  # gone to make room


def ledger_of(backend: str, request, **bounds) -> MemoryLedger | RedisLedger:
    if backend == "memory":
        return MemoryLedger(600, limit=10, **bounds)
    return RedisLedger(connect(request.getfixturevalue("redis_url")), 600, **bounds)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_client_keeps_its_newest_records_over_all_its_sessions_and_no_other_clients(backend, request):
    ledger, tenure, other = ledger_of(backend, request, per_client=5), ("app1:x", 1), f"{CLIENT}:{backend}-other"
    client = f"{CLIENT}:{backend}"
    assert (await ledger.begin(f"{backend}-b", "theirs", "d", tenure, other)).verdict is Verdict.RUN
    await ledger.finish(f"{backend}-b", "theirs", tenure, b'{"result":"theirs"}', other)
    for number in range(7):  # over three sessions
        await ledger.begin(f"{backend}-s{number % 3}", f"k{number}", "d", tenure, client)
        await ledger.finish(f"{backend}-s{number % 3}", f"k{number}", tenure, b'{"result":%d}' % number, client)
    newest_first = [
        (await ledger.begin(f"{backend}-s{n % 3}", f"k{n}", "d", tenure, client)).verdict for n in range(6, -1, -1)
    ]
    assert newest_first == [Verdict.DONE] * 5 + [Verdict.RUN] * 2  # the 6th and 7th pushed the client's oldest out
    assert (await ledger.begin(f"{backend}-b", "theirs", "d", tenure, other)).answer == b'{"result":"theirs"}'


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_clients_answers_past_its_byte_share_are_recorded_as_run_without_them(backend, request):
    ledger, tenure, client = ledger_of(backend, request, per_client_bytes=100), ("app1:x", 1), f"{CLIENT}:{backend}b"
    answer = b'"' + b"x" * 58 + b'"'  # 60 bytes: one fits, two do not
    for number, session in enumerate([f"{backend}-1", f"{backend}-2", f"{backend}-2"]):  # the last another's
        who = client if number < 2 else f"{client}-other"
        await ledger.begin(session, f"k{number}", "d", tenure, who)
        await ledger.finish(session, f"k{number}", tenure, answer, who)
    sessions = [f"{backend}-1", f"{backend}-2", f"{backend}-2"]
    answers = [await ledger.begin(session, f"k{n}", "d", tenure, client) for n, session in enumerate(sessions)]
    assert [(begun.verdict, begun.answer) for begun in answers] == [
        (Verdict.DONE, answer),
        (Verdict.DONE, None),  # ran: a repeat hears it ran, and nothing runs again
        (Verdict.DONE, answer),  # another client's
    ]


async def test_a_clients_share_holds_under_concurrent_requests_and_its_bytes_add_up(redis_url):
    """Twenty requests at once, on ten sessions, from one client with a share of 5: five records stay, and the
    bytes counted for its answers are those of the answers it keeps."""
    redis = connect(redis_url)
    ledger, tenure, client = RedisLedger(redis, 600, per_client=5), ("app1:x", 1), f"{CLIENT}:concurrent"

    async def call(number: int) -> None:
        await ledger.begin(f"conc{number % 10}", f"k{number}", "d", tenure, client)
        await ledger.finish(f"conc{number % 10}", f"k{number}", tenure, b'"' + b"x" * number + b'"', client)

    async with anyio.create_task_group() as group:
        for number in range(20):
            group.start_soon(call, number)
    members = await redis.zrange(keys.CLIENT_REQUESTS.format(client), 0, -1)
    kept = [int(member.split(b" ")[0]) for member in members]
    recorded = 0
    for session in (f"conc{n}" for n in range(10)):
        recorded += len([name for name in await redis.hkeys(keys.REQUESTS.format(session)) if name != b"#bytes"])
    assert (len(members), recorded) == (5, 5)
    assert int(await redis.get(keys.CLIENT_ANSWER_BYTES.format(client))) == sum(kept) > 0
    await redis.aclose()


async def test_records_past_the_horizon_stop_counting_against_their_client_whichever_their_session(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(ledger_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    ledger, tenure = MemoryLedger(10.0, limit=10, per_client_bytes=100), ("app1:x", 1)
    answer = b'"' + b"x" * 58 + b'"'  # 60 bytes: one fits the client's share
    await ledger.begin("idle", "k0", "d", tenure, CLIENT)
    await ledger.finish("idle", "k0", tenure, answer, CLIENT)
    clock[0] = 20.0  # the idle session's record is past the horizon
    await ledger.begin("busy", "k1", "d", tenure, CLIENT)
    await ledger.finish("busy", "k1", tenure, answer, CLIENT)
    assert (await ledger.begin("busy", "k1", "d", tenure, CLIENT)).answer == answer


async def test_an_instance_keeps_at_most_its_records_of_all_clients():
    ledger, tenure = MemoryLedger(600, limit=100, max_records=10), ("app1:x", 1)
    for number in range(12):
        await ledger.begin(f"s{number}", "k", "d", tenure, f"{CLIENT}:{number}")
        await ledger.finish(f"s{number}", "k", tenure, b"{}", f"{CLIENT}:{number}")
    newest_first = [(await ledger.begin(f"s{n}", "k", "d", tenure, f"{CLIENT}:{n}")).verdict for n in range(11, -1, -1)]
    assert newest_first == [Verdict.DONE] * 10 + [Verdict.RUN] * 2  # the two oldest went: asked again, they run


async def test_a_repeat_waits_at_most_its_bound_then_hears_still_running(serving, monkeypatch):
    tools, client, session = serving
    monkeypatch.setattr(once, "IN_PROGRESS_WAIT_SECONDS", 0.2)
    async with anyio.create_task_group() as group:
        group.start_soon(_post, client, _call(9, "held"), session)
        await _running(tools, "held")
        running = await client.post("/mcp", json=_call(9, "held"), headers=session)
        tools.release.set()
    assert running.status_code == 409
    message = running.json()["error"]["message"]
    assert message.startswith("request 9 is still running") and message.endswith(MAY_HAVE_RUN)
    assert tools.runs == ["held"]
