"""The MCP server: one small tool per capability of the seed's feature matrix.

Tool names are a public interface: the README, the load tests and outside
checks call them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import anyio
from mcp.server.mcpserver import (
    AcceptedElicitation,
    Context,
    Elicit,
    ElicitationResult,
    MCPServer,
    RequestStateSecurity,
    Resolve,
    Sample,
)
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.subscriptions import SubscriptionBus
from mcp.types import CreateMessageResult, SamplingMessage, TextContent
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

from app.legacy_subscriptions import LegacySubscriptions
from app.redis_store import StoreUnavailable
from app.settings import SERVER_NAME, Settings
from app.state import HANDLE_PATTERN, BulletinStore, CounterStore, HandleCounterStore

if TYPE_CHECKING:
    from app.cluster import Cluster
    from app.shared_state import SharedState

UPDATES_URI = "updates://{topic}"  # publish_update's resources; "updates://bulletin" by default
_TOPIC = r"[a-z0-9-]{1,32}"
TOPIC_PATTERN = f"^{_TOPIC}$"
UPDATES_URI_PATTERN = f"^updates://{_TOPIC}$"
MAX_FILE_BYTES = 1024 * 1024
log = logging.getLogger(__name__)
FileOperation = Literal["count-lines", "count-words", "reverse-words", "uppercase"]


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


class ServerState:
    """What the tools share, built once per process."""

    def __init__(
        self,
        settings: Settings,
        counters: CounterStore,
        handles: HandleCounterStore,
        bulletins: BulletinStore,
        shared: SharedState | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.settings = settings
        self.counters = counters  # per 2025-11-25 session
        self.handles = handles  # per handle from open_counter, no session needed
        self.bulletins = bulletins
        self.shared = shared  # what the instances share through Redis, when MCP_REDIS_URL is set
        self.cluster = cluster  # the Redis session store, when MCP_SESSION_STORE=redis
        self.ready = False


def session_id_of(ctx: Context, settings: Settings) -> str | None:
    """The request's MCP session, or None on stateless presets and 2026-07-28 requests (which have none)."""
    if settings.preset.stateless or ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return None
    # On a stateful preset the SDK has already matched this header to a live session.
    return (ctx.headers or {}).get("mcp-session-id")


def resolve_data_file(data_dir: Path, path: str) -> Path:
    """The file `path` names under `data_dir`; refuses anything that resolves outside it."""
    try:
        candidate = (data_dir / path).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError(f"no file {path!r} in the data directory") from None
    except (OSError, RuntimeError) as exc:
        raise ToolError(f"cannot open {path!r}: {exc.__class__.__name__}") from None
    if not candidate.is_relative_to(data_dir):
        raise ToolError(f"path {path!r} is outside the data directory; give a path relative to it, like 'poem.txt'")
    if not candidate.is_file():
        raise ToolError(f"path {path!r} is not a regular file")
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


def build_server(
    state: ServerState,
    subscriptions: LegacySubscriptions,
    bus: SubscriptionBus | None = None,
    security: RequestStateSecurity | None = None,
) -> MCPServer:
    """`bus` None: the SDK's in-process bus; `security` None: a request-state key of this process only."""
    settings = state.settings

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if state.shared is not None:
                await stack.enter_async_context(state.shared.running())
            if state.cluster is not None:
                await stack.enter_async_context(state.cluster.running())
            state.ready = True
            try:
                yield
            finally:
                state.ready = False

    mcp = MCPServer(
        SERVER_NAME,
        request_state_security=security,
        lifespan=lifespan,
        log_level=settings.log_level,
        subscriptions=bus,
    )
    if not settings.preset.stateless:
        subscriptions.install(mcp)

    @mcp.tool()
    async def process_file(path: str, operation: FileOperation) -> str:
        """Read a text file under the server's data directory and transform it."""
        file = resolve_data_file(settings.data_dir, path)
        try:
            text = await anyio.Path(file).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"file {path!r} is not UTF-8 text") from None
        return apply_operation(text, operation)

    @mcp.tool()
    async def open_counter() -> CounterHandle:
        """Start a counter at 0 and return its handle, for increment: state without a session."""
        try:
            return CounterHandle(handle=await state.handles.open())
        except StoreUnavailable as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool()
    async def increment(
        ctx: Context,
        handle: Annotated[str | None, Field(pattern=HANDLE_PATTERN, description="From open_counter")] = None,
    ) -> int:
        """Add one to a counter and return it: 1, 2, 3, ... The counter of `handle` (from open_counter),
        or without one this MCP session's."""
        session_id = session_id_of(ctx, settings)
        if handle is None and session_id is None:
            raise ToolError(
                "increment without a handle counts per MCP session and this request has none "
                "(stateless presets and 2026-07-28 requests carry no Mcp-Session-Id); "
                "call open_counter and pass its handle"
            )
        try:
            if handle is not None:
                return await state.handles.increment(handle)
            return await state.counters.increment(session_id)
        except (StoreUnavailable, LookupError) as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool()
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

    @mcp.tool()
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

    @mcp.resource(UPDATES_URI, mime_type="text/plain")
    async def updates(topic: str) -> str:
        """The latest update published on `topic`."""
        current = await state.bulletins.read(topic)
        return f"v{current.version}: {current.text}"

    @mcp.tool()
    async def publish_update(
        ctx: Context,
        message: Annotated[str, Field(max_length=1000)],
        topic: Annotated[str, Field(pattern=TOPIC_PATTERN)] = "bulletin",
    ) -> PublishResult:
        """Change the resource updates://<topic> and notify every client subscribed to it."""
        uri = UPDATES_URI.format(topic=topic)
        current = await state.bulletins.publish(topic, message)
        notified = await subscriptions.announce(uri)  # 2025-11-25 sessions, on their GET streams
        await ctx.notify_resource_updated(uri)  # 2026-07-28 subscriptions/listen streams
        return PublishResult(uri=uri, version=current.version, notified_sessions=notified)

    @mcp.tool()
    async def whoami(ctx: Context) -> Identity:
        """Which instance answered, under which preset, for which session."""
        return Identity(
            instance=settings.instance_id,
            preset=settings.preset.value,
            session_id=session_id_of(ctx, settings),
            protocol_version=ctx.protocol_version,
            pid=os.getpid(),
        )

    return mcp
