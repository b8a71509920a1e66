"""A server whose tool writes, waits, then writes again, served as one instance of several: the tests kill or
stall what they need (the instance, Redis) while it waits, then send the call again with the same id. Its
other tools announce what sessions hear on their GET streams: a resource's update, a change of the tool list.

    python -m tests.servers.writer      (configured by the MCP_* variables, as every instance)
"""

from __future__ import annotations

import sys
from typing import Annotated

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field
from starlette.types import ASGIApp

from mcp_cluster import (
    InstanceSettings,
    SubscribableURIs,
    instance_app,
    notify_resource_updated,
    request_key,
    session_state,
)
from mcp_cluster.serving import run_from_env

mcp = MCPServer("writer")
TOPIC = r"^topic://[a-z0-9]{1,16}$"


class Written(BaseModel):
    before: int  # the session's "before" counter after the first write
    after: int  # its "after" counter after the second
    key: str | None  # the call's request key


@mcp.tool()
async def write_wait_write(ctx: Context, wait_seconds: Annotated[float, Field(ge=0, le=30)] = 0.0) -> Written:
    """Add one to "before", wait, add one to "after"."""
    state = session_state(ctx)
    before = await state.increment("before")
    await anyio.sleep(wait_seconds)
    return Written(before=before, after=await state.increment("after"), key=request_key(ctx))


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
async def counters(ctx: Context) -> dict[str, int]:
    """Where the session's counters stand."""
    state = session_state(ctx)
    return {"before": await state.get("before", 0), "after": await state.get("after", 0)}


@mcp.tool()
async def announce_update(ctx: Context, uri: Annotated[str, Field(pattern=TOPIC)]) -> int:
    """Tell the subscribers of `uri` it changed; returns how many sessions held here are subscribed."""
    return await notify_resource_updated(ctx, uri)


@mcp.tool()
async def announce_tools_changed(ctx: Context) -> str:
    """Tell every session the tool list changed."""
    await ctx.notify_tools_changed()
    return "told"


def create_app() -> ASGIApp:
    return instance_app(mcp, InstanceSettings.from_env(), subscribable=SubscribableURIs(TOPIC, "topic://<name>"))


if __name__ == "__main__":
    sys.exit(run_from_env("tests.servers.writer:create_app", "writer"))
