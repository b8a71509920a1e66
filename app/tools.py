"""The demo MCP server: one small tool per capability of the seed's feature matrix.

Tool names are a public interface: the docs, the load tests and outside checks call them. The server
knows nothing of balancers or Redis sessions: `app/asgi.py` serves it through `mcp_cluster.instance`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import anyio
from mcp.server.mcpserver import (
    AcceptedElicitation,
    Context,
    Elicit,
    ElicitationResult,
    MCPServer,
    Resolve,
    Sample,
)
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CreateMessageResult, SamplingMessage, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from app.bulletins import Bulletins
from app.capacity import AtCapacity
from app.counters import HANDLE_PATTERN, HandleCounters
from mcp_cluster.http.clients import ClientId, client_of_request
from mcp_cluster.sessions.state import session_id_of, session_state
from mcp_cluster.sessions.subscriptions import SubscribableURIs, notify_resource_updated
from mcp_cluster.shared.redis import RedisUnavailable

SERVER_NAME = "mcp-scale-lab"  # the same on every instance: it is the requestState audience
UPDATES_URI = "updates://{topic}"  # publish_update's resources; "updates://bulletin" by default
_TOPIC = r"[a-z0-9-]{1,32}"
TOPIC_PATTERN = f"^{_TOPIC}$"
UPDATES = SubscribableURIs(pattern=f"^updates://{_TOPIC}$", shown_as="updates://<topic>")
MAX_FILE_BYTES = 1024 * 1024
SESSION_COUNTER = "counter"  # increment's session-state key
log = logging.getLogger(__name__)
FileOperation = Literal["count-lines", "count-words", "reverse-words", "uppercase"]
# Changes nothing: a repeated call runs again (the layer records the outcome of every other tool:
# mcp_cluster/sessions/once.py).
READ_ONLY = ToolAnnotations(read_only_hint=True)


class Confirmation(BaseModel):
    confirm: bool = Field(description="Go ahead with the action?")


class PublishResult(BaseModel):
    uri: str
    version: int
    notified_sessions: int = Field(description="2025-11-25 sessions told on their GET stream")


class CounterHandle(BaseModel):
    handle: str = Field(description="Pass it to increment; it works on every instance until unused for a while")


class Identity(BaseModel):
    instance: str
    preset: str
    session_id: str | None
    protocol_version: str | None
    pid: int


def resolve_data_file(data_dir: Path, path: str) -> Path:
    """The file `path` names under `data_dir`. Whatever names no regular file inside it (missing, absolute,
    escaping, a NUL byte, a directory) gets the one same refusal, so none tells what exists outside."""
    refusal = ToolError(f"no file {path!r} in the data directory; give a path relative to it, like 'poem.txt'")
    if "\x00" in path or Path(path).is_absolute():
        raise refusal
    try:
        candidate = (data_dir / path).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise refusal from None
    if not candidate.is_relative_to(data_dir) or not candidate.is_file():
        raise refusal
    if candidate.stat().st_size > MAX_FILE_BYTES:
        raise ToolError(f"file {path!r} is larger than {MAX_FILE_BYTES} bytes")
    return candidate


def apply_operation(text: str, operation: FileOperation) -> str:
    if operation == "count-lines":
        return f"{len(text.splitlines())} lines"
    if operation == "count-words":
        return f"{len(text.split())} words"
    if operation == "reverse-words":
        return " ".join(reversed(text.split()))
    return text.upper()


def ask_model(text: str) -> Sample:
    prompt = f"Analyze this text in one sentence:\n{text}"
    return Sample([SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=200)


def ask_confirmation(action: str) -> Elicit[Confirmation]:
    return Elicit(f"Confirm the action: {action}", Confirmation)


@dataclass(frozen=True)
class Demo:
    """What the tools need besides the session: where files are, the counters and bulletins, and who answers."""

    data_dir: Path
    handles: HandleCounters
    bulletins: Bulletins
    instance_id: str
    preset: str


def build_server(demo: Demo, log_level: str = "INFO") -> MCPServer:
    mcp = MCPServer(SERVER_NAME, log_level=log_level)
    _add_file_tool(mcp, demo.data_dir)
    _add_counter_tools(mcp, demo.handles)
    _add_client_tools(mcp)
    _add_update_tools(mcp, demo.bulletins)

    @mcp.tool(annotations=READ_ONLY)
    async def whoami(ctx: Context) -> Identity:
        """Which instance answered, under which preset, for which session."""
        return Identity(
            instance=demo.instance_id,
            preset=demo.preset,
            session_id=session_id_of(ctx),
            protocol_version=ctx.protocol_version,
            pid=os.getpid(),
        )

    return mcp


def client_of_call(ctx: Context) -> ClientId:
    """Who the call comes from (its HTTP request's principal or address), as the per-client bounds count it."""
    return client_of_request(ctx.request_context.request)


def _add_file_tool(mcp: MCPServer, data_dir: Path) -> None:
    @mcp.tool(annotations=READ_ONLY)
    async def process_file(path: str, operation: FileOperation) -> str:
        """Read a text file under the server's data directory and transform it."""
        file = resolve_data_file(data_dir, path)
        try:
            text = await anyio.Path(file).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"file {path!r} is not UTF-8 text") from None
        return apply_operation(text, operation)


def _add_counter_tools(mcp: MCPServer, handles: HandleCounters) -> None:
    @mcp.tool()
    async def open_counter(ctx: Context) -> CounterHandle:
        """Start a counter at 0 and return its handle, for increment: state without a session."""
        try:
            return CounterHandle(handle=await handles.open(client_of_call(ctx)))
        except (RedisUnavailable, AtCapacity) as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool()
    async def increment(
        ctx: Context,
        handle: Annotated[str | None, Field(pattern=HANDLE_PATTERN, description="From open_counter")] = None,
    ) -> int:
        """Add one to a counter and return it: 1, 2, 3, ... The counter of `handle` (from open_counter),
        or without one this MCP session's."""
        if handle is None and session_id_of(ctx) is None:
            raise ToolError(
                "increment without a handle counts per MCP session and this request has none "
                "(stateless presets and 2026-07-28 requests carry no Mcp-Session-Id); "
                "call open_counter and pass its handle"
            )
        try:
            if handle is not None:
                return await handles.increment(handle, client_of_call(ctx))
            return await session_state(ctx).increment(SESSION_COUNTER)
        except (RedisUnavailable, LookupError) as exc:
            raise ToolError(str(exc)) from None


def _add_client_tools(mcp: MCPServer) -> None:
    """The tools that ask the client something: progress and logs, sampling, elicitation."""

    @mcp.tool(annotations=READ_ONLY)
    async def slow_task(
        ctx: Context,
        steps: Annotated[int, Field(ge=1, le=100)] = 5,
        step_seconds: Annotated[float, Field(ge=0, le=0.5)] = 0.1,
    ) -> str:
        """Work through `steps` steps, logging and reporting progress at every one."""
        for step in range(1, steps + 1):
            await anyio.sleep(step_seconds)
            await ctx.info(f"step {step}/{steps}")
            await ctx.report_progress(step, steps, f"step {step}/{steps}")
        return f"done: {steps} steps"

    @mcp.tool(annotations=READ_ONLY)  # its requestState may be retried too
    async def analyze_with_ai(
        text: Annotated[str, Field(max_length=10_000)],
        completion: Annotated[CreateMessageResult, Resolve(ask_model)],
    ) -> str:
        """Ask the client's model (sampling) to analyze `text`."""
        content = completion.content
        answer = content.text if isinstance(content, TextContent) else f"<{content.type} content>"
        return f"analysis: {answer}"

    @mcp.tool()
    async def confirm_action(
        action: Annotated[str, Field(max_length=500)],
        answer: Annotated[ElicitationResult[Confirmation], Resolve(ask_confirmation)],
    ) -> str:
        """Ask the user (elicitation) to confirm `action` before doing it."""
        if isinstance(answer, AcceptedElicitation):
            if answer.data.confirm:
                log.info("action confirmed", extra={"fields": {"action": action}})  # the action's audit line
            return f"{'confirmed' if answer.data.confirm else 'not confirmed'}: {action}"
        return f"{'declined' if answer.action == 'decline' else 'cancelled'}: {action}"


def _add_update_tools(mcp: MCPServer, bulletins: Bulletins) -> None:
    @mcp.resource(UPDATES_URI, mime_type="text/plain")
    async def updates(topic: str) -> str:
        """The latest update published on `topic`."""
        current = await bulletins.read(topic)
        return f"v{current.version}: {current.text}"

    @mcp.tool()
    async def publish_update(
        ctx: Context,
        message: Annotated[str, Field(max_length=1000)],
        topic: Annotated[str, Field(pattern=TOPIC_PATTERN)] = "bulletin",
    ) -> PublishResult:
        """Change the resource updates://<topic> and notify every client subscribed to it."""
        uri = UPDATES_URI.format(topic=topic)
        try:
            current = await bulletins.publish(topic, message, client_of_call(ctx))
        except AtCapacity as exc:
            raise ToolError(str(exc)) from None
        notified = await notify_resource_updated(ctx, uri)
        return PublishResult(uri=uri, version=current.version, notified_sessions=notified)
