"""`mcp_calls_total{method, outcome}`, read off the call-duration histogram (every call is in it) and the
failures counted as they happen, so a call that goes well costs one histogram update and nothing more."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, Metric

from mcp_cluster.metrics.accumulators import LabelledCounter, LabelledHistogram

FAILURES = ("error", "tool_error")


class CallCounts:
    """Calls by method and outcome: `ok` is every timed call of the method less its failures."""

    def __init__(self, durations: LabelledHistogram, failures: LabelledCounter) -> None:
        self.durations, self.failures = durations, failures

    def collect(self) -> Metric:
        family = CounterMetricFamily(
            "mcp_calls", "JSON-RPC requests served, by method and outcome (ok, error, tool_error)",
            labels=["method", "outcome"],
        )  # fmt: skip
        for method in sorted(self.durations.slots):
            failed = {outcome: self.failures.values.get((method, outcome), 0) for outcome in FAILURES}
            ok = self.durations.count(method) - sum(failed.values())
            for outcome, value in (("ok", ok), *failed.items()):
                if value:
                    family.add_metric([method, outcome], value)
        return family
