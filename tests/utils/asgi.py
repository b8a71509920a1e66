"""Serving an ASGI app in-process as a server would: its lifespan around the block, requests over httpx2."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from starlette.types import ASGIApp

from loadtest.experiments.bench.in_process import lifespan

JSON_RPC = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {  # a 2025-11-25 session's first request
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[httpx2.AsyncClient]:
    """Start `app` (lifespan startup), yield a client of it, and shut it down after the block."""
    async with lifespan(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            yield client
