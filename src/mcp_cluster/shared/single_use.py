"""2026-07-28 `requestState` that authorises a side effect is honoured once.

The SDK checks a retry's `requestState` (seal, expiry, the request it belongs to, the principal) but a
valid one may be sent again, and a tool that acts on the answer would act again: one confirmation, N
executions. The spec leaves at-most-once to the server. Here every `tools/call` retry of a tool that is
not marked read-only or idempotent claims its sealed state (a SHA-256 of it) once it has passed the
SDK's checks, in Redis when the instances share one (a replay on another instance is caught too), else
in this process; a state already claimed is refused with the SDK's own error. A claim lives as long
as the state could (the boundary's TTL, with the SDK's allowance for clocks), and no longer.
"""

from __future__ import annotations

import hashlib
import logging
from contextvars import ContextVar
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.request_state import RequestStateBoundary
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS
from redis.asyncio import Redis

from mcp_cluster import sdk_internals
from mcp_cluster.shared.claims import Claims, TooManyClaims
from mcp_cluster.shared.keys import USED_REQUEST_STATE
from mcp_cluster.shared.redis import RedisUnavailable

CLOCK_ALLOWANCE_SECONDS = 60.0  # a state may be stamped this far ahead of a receiver's clock (the SDK's)
_wire_state: ContextVar[str | None] = ContextVar("wire_request_state", default=None)
log = logging.getLogger(__name__)


class SingleUseRequestState:
    """Claims, in `claim`, each sealed state a side-effecting retry carries; installed around the SDK's
    boundary by `install`: outside it to see the sealed state, inside it to claim only verified ones."""

    def __init__(self, mcp: MCPServer, redis: Redis | None) -> None:
        self._mcp = mcp
        self._claims = Claims(redis, USED_REQUEST_STATE, 0.0)  # as long as the boundary's states live: install

    def install(self) -> None:
        chain = self._mcp.middleware
        boundary, sealing = next((index, m) for index, m in enumerate(chain) if isinstance(m, RequestStateBoundary))
        self._claims.ttl_seconds = sdk_internals.request_state_ttl(sealing) + CLOCK_ALLOWANCE_SECONDS
        chain[boundary : boundary + 1] = [self._remember_sealed, sealing, self._claim_verified]

    async def _remember_sealed(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        state = (ctx.params or {}).get("requestState") if ctx.method == "tools/call" else None
        token = _wire_state.set(state if isinstance(state, str) else None)
        try:
            return await call_next(ctx)
        finally:
            _wire_state.reset(token)

    async def _claim_verified(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        sealed = _wire_state.get()
        if sealed is not None and await self._acts((ctx.params or {}).get("name")):
            try:
                first = await self.claim(sealed)
            except (RedisUnavailable, TooManyClaims) as exc:
                raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from None
            if not first:  # the SDK's own words, the reason to the log only
                log.warning("requestState rejected on %s: used before (the tool is not idempotent)", ctx.method)
                raise MCPError(INVALID_PARAMS, "Invalid or expired requestState", {"reason": "invalid_request_state"})
        return await call_next(ctx)

    async def _acts(self, tool_name: object) -> bool:
        """Whether a tool may change something: anything not annotated read-only or idempotent."""
        annotations = await sdk_internals.tool_annotations(self._mcp, tool_name) if isinstance(tool_name, str) else None
        return not (annotations and (annotations.read_only_hint or annotations.idempotent_hint))

    async def claim(self, sealed: str) -> bool:
        """True the first time `sealed` is claimed (on any instance sharing the Redis), False after."""
        return await self._claims.first(hashlib.sha256(sealed.encode()).hexdigest())
