"""A bare-SDK instance for the local stack, the scale curve's reference: the demo's tools on the SDK's app alone
(`references.bare_sdk`: memory sessions, the preset's options), with only what nginx's `session` policy needs to
send a session to its instance (ids that begin with the instance's name) and the health routes the stack waits
on, served by uvicorn as ours is.

    MCP_INSTANCE_ID=app1 MCP_LISTEN_PORT=8001 python -m loadtest.experiments.bench.bare_instance

`Stack(server="loadtest.experiments.bench.bare_instance")` runs three of them behind the same nginx.
"""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from loadtest.experiments.bench.references import bare_sdk
from mcp_cluster.http.middleware import SessionIdPrefix
from mcp_cluster.serving import run_from_env


async def _healthy(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ready", "instance": os.environ.get("MCP_INSTANCE_ID", "sdk")})


def create_app() -> ASGIApp:
    sdk = bare_sdk()
    sdk.router.routes.extend([Route("/healthz", _healthy), Route("/readyz", _healthy)])
    return SessionIdPrefix(sdk, os.environ.get("MCP_INSTANCE_ID", "sdk"))


if __name__ == "__main__":
    raise SystemExit(run_from_env("loadtest.experiments.bench.bare_instance:create_app", "bare_instance"))
