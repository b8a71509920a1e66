"""An ASGI app served in this process as a server would serve it: its lifespan around a block
(`lifespan`), and POSTs handed to it with no HTTP server and no socket (`InProcessClient`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.types import ASGIApp, Message

_HOST = (b"host", b"127.0.0.1:8000")


class InProcessClient:
    """Requests to an ASGI app on this event loop: a POST's whole answer, as a server would hand it over."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def post(self, body: dict, sent: dict[str, str]) -> tuple[int, dict[bytes, bytes], bytes]:
        encoded = json.dumps(body).encode()
        pending = [{"type": "http.request", "body": encoded, "more_body": False}]
        answered = anyio.Event()
        start: dict = {}
        chunks: list[bytes] = []

        async def receive() -> Message:
            if pending:
                return pending.pop()
            await answered.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    answered.set()

        await self.app(_scope(sent), receive, send)
        return start["status"], dict(start.get("headers", [])), b"".join(chunks)


def _scope(sent: dict[str, str]) -> dict:
    raw = [_HOST, *((name.lower().encode(), value.encode()) for name, value in sent.items())]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run `app`'s lifespan around the block, as a server does around its requests."""
    to_app, inbox = anyio.create_memory_object_stream[Message](2)
    started, stopped = anyio.Event(), anyio.Event()

    async def send(message: Message) -> None:
        if message["type"].startswith("lifespan.startup."):
            if message["type"] != "lifespan.startup.complete":
                raise RuntimeError(f"the app did not start: {message}")
            started.set()
        elif message["type"].startswith("lifespan.shutdown."):
            stopped.set()

    async with to_app, inbox, anyio.create_task_group() as group:
        group.start_soon(app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.receive, send)
        await to_app.send({"type": "lifespan.startup"})
        await started.wait()
        try:
            yield
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            await stopped.wait()
