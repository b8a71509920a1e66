"""Serving an ASGI app in-process as a server would: its lifespan around the block, requests over httpx2."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
from starlette.types import ASGIApp, Message


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[httpx2.AsyncClient]:
    """Start `app` (lifespan startup), yield a client of it, and shut it down after the block."""
    to_app, app_inbox = anyio.create_memory_object_stream[Message](2)
    started, stopped = anyio.Event(), anyio.Event()

    async def send(message: Message) -> None:
        if message["type"].startswith("lifespan.startup."):
            assert message["type"] == "lifespan.startup.complete", message
            started.set()
        elif message["type"].startswith("lifespan.shutdown."):
            stopped.set()

    async with to_app, app_inbox, anyio.create_task_group() as group:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        group.start_soon(app, scope, app_inbox.receive, send)
        await to_app.send({"type": "lifespan.startup"})
        await started.wait()
        transport = httpx2.ASGITransport(app=app)
        try:
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
                yield client
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            await stopped.wait()
