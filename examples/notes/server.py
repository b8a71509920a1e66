"""A server of your own, served as one instance of several: nothing here knows of balancers or Redis.

Its notes are session-scoped state (`session_state`), so with the Redis session store they live with the
session in Redis: any instance serves them, and they outlive the instance that held the session.

    MCP_INSTANCE_ID=notes1 MCP_SESSION_STORE=redis MCP_REDIS_URL=redis://127.0.0.1:6379/0 python -m examples.notes

Its outbox (`send_note`) stands for an effect outside the layer's stores, a mail system: a SQLite file
(NOTES_OUTBOX) that the instances of one host share.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Annotated

import anyio
from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, MCPServer, Resolve, Sample
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CreateMessageResult, SamplingMessage, TextContent
from pydantic import BaseModel, Field
from starlette.types import ASGIApp

from mcp_cluster import InstanceSettings, configure_logging, instance_app, request_key, session_state

mcp = MCPServer("notes")
NoteText = Annotated[str, Field(min_length=1, max_length=500)]
Recipient = Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$")]
OUTBOX = Path(os.environ.get("NOTES_OUTBOX", Path(tempfile.gettempdir()) / "notes-outbox.sqlite3"))  # what mail sends


class Forget(BaseModel):
    forget: bool = Field(description="Forget every note of this session?")


def ask_for_a_note(topic: str) -> Sample:
    prompt = f"Write a one-line note about {topic}."
    return Sample([SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=100)


def ask_to_forget() -> Elicit[Forget]:
    return Elicit("Forget every note of this session?", Forget)


@mcp.tool()
async def add_note(ctx: Context, text: NoteText) -> int:
    """Keep a note for this session; returns how many notes the session holds."""
    notes = session_state(ctx)
    count = await notes.increment("count")
    await notes.set(f"note.{count}", text)
    return count


@mcp.tool()
async def list_notes(ctx: Context) -> list[str]:
    """Every note of this session, oldest first."""
    notes = session_state(ctx)
    return [await notes.get(f"note.{n}") for n in range(1, await notes.get("count", 0) + 1)]


@mcp.tool()
async def suggest_note(
    ctx: Context, topic: NoteText, suggestion: Annotated[CreateMessageResult, Resolve(ask_for_a_note)]
) -> int:
    """Ask the client's model for a note about `topic` (sampling) and keep it."""
    content = suggestion.content
    return await add_note(ctx, content.text if isinstance(content, TextContent) else f"<{content.type}>")


@mcp.tool()
async def review_notes(ctx: Context) -> str:
    """Read every note back, reporting progress note by note."""
    notes = await list_notes(ctx)
    for done in range(1, len(notes) + 1):
        await ctx.report_progress(done, len(notes), f"note {done}/{len(notes)}")
    return "\n".join(notes)


@mcp.tool()
async def forget_notes(ctx: Context, answer: Annotated[ElicitationResult[Forget], Resolve(ask_to_forget)]) -> str:
    """Ask the user (elicitation) before forgetting every note of this session."""
    if not (isinstance(answer, AcceptedElicitation) and answer.data.forget):
        return "kept"
    await session_state(ctx).set("count", 0)
    return "forgotten"


@mcp.tool()
async def send_note(ctx: Context, to: Recipient, number: int) -> str:
    """Mail note `number` to `to`, once however often the call is retried: the outbox (a database every instance
    reaches) keys each mail by the call's request key, so a second run of the call adds no second mail."""
    text = await session_state(ctx).get(f"note.{number}")
    if text is None:
        raise ToolError(f"no note {number} in this session")
    await anyio.to_thread.run_sync(_post, request_key(ctx), to, text)
    return f"sent note {number} to {to}"


def _post(key: str | None, to: str, text: str) -> None:
    with sqlite3.connect(OUTBOX) as outbox:
        outbox.execute("CREATE TABLE IF NOT EXISTS mail (key TEXT UNIQUE, recipient TEXT, text TEXT)")
        outbox.execute("INSERT INTO mail VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING", (key, to, text))


def create_app() -> ASGIApp:
    settings = InstanceSettings.from_env()
    configure_logging(settings.instance_id, settings.log_level)
    return instance_app(mcp, settings)
