"""uvicorn factories for the idle-session breakdown: the bare SDK and ours with tracemalloc on, each with one
route of the benchmark's own, `GET /bench/snapshot`, that writes a snapshot of the traced memory into
$BENCH_TRACE_DIR and answers with its path. Never part of a served app: only the benchmark builds these.

    uvicorn --factory loadtest.experiments.bench.traced:bare_sdk      (or :ours)
"""

from __future__ import annotations

import gc
import itertools
import os
import tracemalloc
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from loadtest.experiments.bench import references

SNAPSHOT_PATH = "/bench/snapshot"


def bare_sdk() -> ASGIApp:
    return _traced(references.bare_sdk)


def ours() -> ASGIApp:
    from app.asgi import create_app

    return _traced(create_app)


def _traced(factory) -> ASGIApp:
    tracemalloc.start()  # before the app is built: its own start-up is in the first snapshot, not a session's
    app = factory()
    numbers = itertools.count()

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != SNAPSHOT_PATH:
            await app(scope, receive, send)
            return
        gc.collect()  # what is only waiting for the collector is no session's
        path = Path(os.environ["BENCH_TRACE_DIR"]) / f"{next(numbers)}.snapshot"
        tracemalloc.take_snapshot().dump(str(path))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(path).encode()})

    return traced
