"""`subscriptions/listen` (2026-07-28) with a bound per client: the SDK's handler bounds an instance's listen
streams (1,024), which one client could otherwise hold all of."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_REQUEST, SubscriptionsListenRequestParams, SubscriptionsListenResult

from mcp_cluster.http.clients import client_of_request
from mcp_cluster.shared.runs import NOT_RUN

MAX_LISTEN_STREAMS_PER_CLIENT = 64  # on one instance, which holds 1,024 in all


class ListenStreamsPerClient:
    """Serves `subscriptions/listen` through the SDK's `handler`, refusing a client that holds `per_client`
    streams on this instance already."""

    def __init__(self, handler: ListenHandler, per_client: int = MAX_LISTEN_STREAMS_PER_CLIENT) -> None:
        self._handler = handler
        self._per_client = per_client
        self._held: Counter[str] = Counter()

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        client = client_of_request(ctx.request)
        if self._held[client.key] >= self._per_client:
            message = f"{client.words} holds {self._per_client} listen streams, the most one client may; {NOT_RUN}"
            raise MCPError(INVALID_REQUEST, f"{message}: end one first")
        self._held[client.key] += 1
        try:
            return await self._handler(ctx, params)
        finally:
            self._held[client.key] -= 1
            if not self._held[client.key]:
                del self._held[client.key]
