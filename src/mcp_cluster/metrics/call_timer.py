"""Counts and times every JSON-RPC request a server serves: an SDK server middleware (`(ctx, call_next)`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult

from mcp_cluster.metrics.instance_metrics import InstanceMetrics

OTHER_METHOD = "other"  # a method the server does not serve: clients choose those, so they share one label


class CallTimer:
    """Records `mcp_call_duration_seconds{method}` and the failures `mcp_calls_total{method, outcome}` reads
    (mcp_cluster/metrics/call_counts.py); notifications are not counted. `serves(method)` tells the methods the
    server has, the only ones named in a label."""

    def __init__(self, metrics: InstanceMetrics, serves: Callable[[str], bool]) -> None:
        self.metrics = metrics
        self.serves = serves

    async def __call__(self, ctx: ServerRequestContext, call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None:
            return await call_next(ctx)
        method = ctx.method if self.serves(ctx.method) else OTHER_METHOD
        started = time.perf_counter()
        try:
            result = await call_next(ctx)
        except BaseException:
            self.metrics.call_failures.add(method, "error")
            raise
        finally:
            self.metrics.call_seconds.observe(time.perf_counter() - started, method)
        if _tool_error(result):
            self.metrics.call_failures.add(method, "tool_error")
        return result


def _tool_error(result: HandlerResult) -> bool:
    """A tool's own error (isError): the call was served, and the tool failed."""
    if isinstance(result, CallToolResult):
        return bool(result.is_error)
    return isinstance(result, dict) and result.get("isError") is True
