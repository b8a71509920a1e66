"""The hop's HTTP/1.1 client against a real uvicorn server in this process: connections kept and reused, one the
owner closed never written to, answers streamed as they come, and each failure named for what it means (the
request never reached the owner, or it may have run)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from loadtest.harness.stack import free_port
from mcp_cluster.cluster import hop_client
from mcp_cluster.cluster.hop_client import HopClient, OwnerLost, OwnerUnreachable

pytestmark = pytest.mark.anyio
HEADERS = [(b"host", b"owner"), (b"content-type", b"application/json")]


def owner_app(peers: list[tuple[str, int]]) -> Starlette:
    async def echo(request: Request) -> Response:
        peers.append(request.client)
        return JSONResponse({"method": request.method, "body": (await request.body()).decode()})

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"data: {n}\n\n".encode()
                await anyio.sleep(0.2)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def closing(request: Request) -> Response:
        peers.append(request.client)
        return JSONResponse({}, headers={"connection": "close"})

    async def silent(request: Request) -> Response:
        await anyio.sleep(1)  # past the client's read timeout
        return JSONResponse({})

    routes = [
        Route("/mcp", echo, methods=["POST", "DELETE"]),
        Route("/events", events),
        Route("/close", closing, methods=["POST"]),
    ]
    return Starlette(routes=[*routes, Route("/silent", silent, methods=["POST"])])


@contextlib.asynccontextmanager
async def owner(port: int, peers: list) -> AsyncIterator[str]:
    config = uvicorn.Config(owner_app(peers), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        while not server.started:
            await anyio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True


async def answer(client: HopClient, url: str, target: bytes = b"/mcp", method: str = "POST") -> tuple[int, bytes]:
    response = await client.send(url, method, target, HEADERS, b'{"a":1}' if method == "POST" else b"")
    body = b"".join([chunk async for chunk in response.chunks()])
    await response.aclose()
    return response.status, body


async def test_hops_share_one_connection_and_carry_method_and_body():
    peers: list = []
    client = HopClient(read_timeout=5)
    async with owner(free_port(), peers) as url:
        answers = [await answer(client, url) for _ in range(3)] + [await answer(client, url, method="DELETE")]
    await client.aclose()
    assert answers[0] == (200, b'{"method":"POST","body":"{\\"a\\":1}"}')
    assert answers[-1] == (200, b'{"method":"DELETE","body":""}')
    assert len(set(peers)) == 1, peers


async def test_a_connection_the_owner_closed_is_never_written_to():
    """The owner restarted on its port between two hops: the second goes over a new connection."""
    client, port = HopClient(read_timeout=5), free_port()
    async with owner(port, []) as url:
        assert (await answer(client, url))[0] == 200
    async with owner(port, []) as url:
        assert (await answer(client, url))[0] == 200
    await client.aclose()


async def test_an_answer_that_asks_to_close_is_not_kept():
    peers: list = []
    client = HopClient(read_timeout=5)
    async with owner(free_port(), peers) as url:
        assert (await answer(client, url, b"/close"))[0] == 200
        assert (await answer(client, url))[0] == 200
    await client.aclose()
    assert len(set(peers)) == 2, peers


async def test_idle_connections_are_not_reused_after_the_keepalive(monkeypatch):
    monkeypatch.setattr(hop_client, "KEEPALIVE_SECONDS", 0.0)
    peers: list = []
    client = HopClient(read_timeout=5)
    async with owner(free_port(), peers) as url:
        for _ in range(2):
            await answer(client, url)
    await client.aclose()
    assert len(set(peers)) == 2


async def test_an_event_stream_arrives_event_by_event():
    client = HopClient(read_timeout=5)
    async with owner(free_port(), []) as url:
        response = await client.send(url, "GET", b"/events", HEADERS, b"")
        arrivals = [(anyio.current_time(), chunk) async for chunk in response.chunks()]
        await response.aclose()
    await client.aclose()
    assert [chunk for _, chunk in arrivals] == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    assert arrivals[-1][0] - arrivals[0][0] > 0.3, "the events came together, not as written"


async def test_no_owner_listening_means_the_request_never_reached_it():
    with pytest.raises(OwnerUnreachable):
        await HopClient(read_timeout=5).send(f"http://127.0.0.1:{free_port()}", "POST", b"/mcp", HEADERS, b"{}")


async def test_an_owner_silent_past_the_read_timeout_may_have_run_the_request():
    client = HopClient(read_timeout=0.3)
    async with owner(free_port(), []) as url:
        with pytest.raises(OwnerLost, match="TimeoutError"):
            await client.send(url, "POST", b"/silent", HEADERS, b"{}")
    await client.aclose()
