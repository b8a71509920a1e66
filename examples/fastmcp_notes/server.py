"""The notes server as a FastMCP 4 server: the same tools as examples/notes, through FastMCP's context.

Nothing here knows of balancers or Redis either; `mcp-cluster serve` serves it as one instance of several:

    MCP_INSTANCE_ID=notes1 MCP_SESSION_STORE=redis MCP_REDIS_URL=redis://127.0.0.1:6379/0 \
        mcp-cluster serve examples.fastmcp_notes.server:mcp
"""

from __future__ import annotations

from typing import Annotated

from fastmcp import Context, FastMCP
from fastmcp.server.elicitation import AcceptedElicitation
from mcp.types import SamplingMessage, TextContent
from pydantic import BaseModel, Field

from mcp_cluster import session_state

mcp = FastMCP("fastmcp-notes")
NoteText = Annotated[str, Field(min_length=1, max_length=500)]


class Forget(BaseModel):
    forget: bool = Field(description="Forget every note of this session?")


@mcp.tool
async def add_note(ctx: Context, text: NoteText) -> int:
    """Keep a note for this session; returns how many notes the session holds."""
    return await _keep(ctx, text)


@mcp.tool
async def list_notes(ctx: Context) -> list[str]:
    """Every note of this session, oldest first."""
    return await _notes(ctx)


@mcp.tool
async def suggest_note(ctx: Context, topic: NoteText) -> int:
    """Ask the client's model for a note about `topic` (sampling) and keep it."""
    prompt = SamplingMessage(
        role="user", content=TextContent(type="text", text=f"Write a one-line note about {topic}.")
    )
    suggestion = await ctx.session.create_message(messages=[prompt], max_tokens=100)
    content = suggestion.content
    return await add_note(ctx, content.text if isinstance(content, TextContent) else f"<{content.type}>")


@mcp.tool
async def forget_notes(ctx: Context) -> str:
    """Ask the user (elicitation) before forgetting every note of this session."""
    answer = await ctx.elicit("Forget every note of this session?", Forget)
    if not (isinstance(answer, AcceptedElicitation) and answer.data.forget):
        return "kept"
    await session_state(ctx).set("count", 0)
    return "forgotten"


@mcp.tool
async def review_notes(ctx: Context) -> str:
    """Read every note back, reporting progress and logging note by note."""
    notes = await _notes(ctx)
    for done in range(1, len(notes) + 1):
        await ctx.report_progress(done, len(notes), f"note {done}/{len(notes)}")
        await ctx.info(f"read note {done}")
    return "\n".join(notes)


async def _keep(ctx: Context, text: str) -> int:
    notes = session_state(ctx)
    count = await notes.increment("count")
    await notes.set(f"note.{count}", text)
    return count


async def _notes(ctx: Context) -> list[str]:
    notes = session_state(ctx)
    return [await notes.get(f"note.{n}") for n in range(1, await notes.get("count", 0) + 1)]
